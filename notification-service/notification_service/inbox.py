"""Every notification lands in its recipient's inbox: paged, with read state and a stream.

Layout: n:in:{user} and n:un:{user} are zsets of notification ids scored by a per-user
sequence number (n:iseq:{user}); n:un holds the unread ones. The sequence number is the
SSE event id, so a client that reconnects with Last-Event-ID gets exactly what it missed.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import orjson
from redis.asyncio import Redis

from notification_service.ledger_keys import notification_key, q, user_key
from notification_service.notification import Notification
from notification_service.scripts import lua

INBOX_USERS_KEY = "n:inbox-users"


inbox_key = partial(user_key, "n:in")
unread_key = partial(user_key, "n:un")
seq_key = partial(user_key, "n:iseq")


# Pub/sub channel (not a key) that wakes the user's open inbox streams; carries the new seq.
INBOX_CHANNEL_PREFIX = "n:iev:"


def inbox_channel(user: str) -> str:
    return f"{INBOX_CHANNEL_PREFIX}{q(user)}"


# Writes, files and announces a chunk of notifications in one call (lua/inbox_land.lua).
_LAND_LUA = lua("inbox_land.lua")
LAND_CHUNK = 1000


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def item_view(notif: Notification, seq: int, read: bool) -> dict[str, Any]:
    return {
        "notification_id": notif.notification_id,
        "seq": seq,
        "title": notif.title,
        "message": notif.message,
        "data": notif.data,
        "sender": notif.sender,
        "created_at": notif.created_at,
        "read": read,
    }


class Inbox:
    def __init__(self, client: Redis, retention_seconds: int, max_items: int) -> None:
        self.r = client
        self.retention = retention_seconds
        self.max_items = max_items
        self._land = client.register_script(_LAND_LUA)

    async def land(self, notifs: Sequence[Notification]) -> int:
        """Write the notifications and file each in its recipient's inbox (idempotent)."""
        written = 0
        for start in range(0, len(notifs), LAND_CHUNK):
            chunk = notifs[start : start + LAND_CHUNK]
            keys = [INBOX_USERS_KEY]
            items = []
            for n in chunk:
                keys += [
                    notification_key(n.notification_id),
                    inbox_key(n.user_id),
                    unread_key(n.user_id),
                    seq_key(n.user_id),
                ]
                items.append({"nid": n.notification_id, "user": q(n.user_id)})
            head = {
                "retention": self.retention,
                "max_items": self.max_items,
                "channel_prefix": INBOX_CHANNEL_PREFIX,
                "items": items,
            }
            args = [orjson.dumps(head), *(n.to_json() for n in chunk)]
            written += int(await self._land(keys=keys, args=args))
        return written

    async def discard(self, notifs: Sequence[Notification]) -> None:
        """Undo `land` for notifications whose delivery task could not be published."""
        async with self.r.pipeline(transaction=False) as pipe:
            for n in notifs:
                pipe.delete(notification_key(n.notification_id))
                pipe.zrem(inbox_key(n.user_id), n.notification_id)
                pipe.zrem(unread_key(n.user_id), n.notification_id)
            await pipe.execute()

    async def unread_count(self, user: str) -> int:
        return int(await self.r.zcard(unread_key(user)))

    async def last_seq(self, user: str) -> int:
        raw = await self.r.get(seq_key(user))
        return int(raw) if raw else 0

    async def page(self, user: str, *, limit: int, before: int | None, unread_only: bool) -> dict[str, Any]:
        key = unread_key(user) if unread_only else inbox_key(user)
        top = f"({before}" if before is not None else "+inf"
        rows: list[Any] = await self.r.zrevrangebyscore(key, top, "-inf", start=0, num=limit, withscores=True)
        items = await self._items(user, [(_s(m), int(s)) for m, s in rows])
        next_before = int(rows[-1][1]) if len(rows) == limit else None
        return {
            "items": items,
            "unread_count": await self.unread_count(user),
            "next_before": next_before,
        }

    async def after(self, user: str, seq: int, limit: int = 100) -> list[dict[str, Any]]:
        """Items with a sequence number above `seq`, oldest first (for the stream)."""
        rows: list[Any] = await self.r.zrangebyscore(
            inbox_key(user), f"({seq}", "+inf", start=0, num=limit, withscores=True
        )
        return await self._items(user, [(_s(m), int(s)) for m, s in rows])

    async def _items(self, user: str, rows: list[tuple[str, int]]) -> list[dict[str, Any]]:
        if not rows:
            return []
        nids = [nid for nid, _ in rows]
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.mget([notification_key(n) for n in nids])
            pipe.zmscore(unread_key(user), nids)
            raws, unread = await pipe.execute()
        items = []
        missing = []
        for (nid, seq), raw, score in zip(rows, raws, unread, strict=True):
            if raw is None:
                missing.append(nid)
                continue
            items.append(item_view(Notification.from_json(raw), seq, read=score is None))
        if missing:  # expired records: drop their inbox entries too
            await self.r.zrem(inbox_key(user), *missing)
            await self.r.zrem(unread_key(user), *missing)
        return items

    async def mark_read(self, user: str, nid: str) -> bool | None:
        """True when it was unread, False when already read, None when not in the inbox."""
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.zrem(unread_key(user), nid)
            pipe.zscore(inbox_key(user), nid)
            removed, score = await pipe.execute()
        if removed:
            return True
        return None if score is None else False

    async def mark_all_read(self, user: str) -> int:
        return int(await self.r.delete(unread_key(user)))

    async def expire_old(self, batch: int = 200) -> int:
        """Drop inbox entries whose notification record has expired; oldest first per user."""
        removed = 0
        async for raw_user in self.r.sscan_iter(INBOX_USERS_KEY, count=500):
            quoted = _s(raw_user)
            ikey, ukey = f"n:in:{quoted}", f"n:un:{quoted}"
            oldest = [_s(m) for m in await self.r.zrange(ikey, 0, batch - 1)]
            if not oldest:
                if not await self.r.exists(ikey):
                    await self.r.srem(INBOX_USERS_KEY, quoted)
                continue
            exists = await self.r.mget([notification_key(n) for n in oldest])
            gone = [n for n, e in zip(oldest, exists, strict=True) if e is None]
            if gone:
                removed += int(await self.r.zrem(ikey, *gone))
                await self.r.zrem(ukey, *gone)
        return removed


def sse_event(item: dict[str, Any]) -> bytes:
    return (
        b"id: " + str(item["seq"]).encode() + b"\nevent: notification\ndata: " + orjson.dumps(item) + b"\n\n"
    )
