"""Planning in the ledger: holding scheduled notifications until their send_at, recording a
batch, and planning each notification's deliveries, the first attempts claimed in the same call.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from redis.asyncio import Redis

from notification_service.ledger_keys import (
    DEFERRED_KEY,
    DUE_LEASE_SECONDS,
    LEDGER_PRELUDE,
    SCHEDULED_KEY,
    SCRIPT_SLICE,
    SENDING,
    SENDING_KEY,
    Claimed,
    Target,
    batch_counts_key,
    batch_ids_key,
    batch_key,
    delivery_key,
    plan_key,
    scheduled_key,
    split_member,
    text,
)
from notification_service.ledger_queries import LedgerQueries
from notification_service.notification import Notification
from notification_service.scripts import lua

# Read once at import; each Ledger registers them (EVALSHA; SCRIPT LOAD on a miss).
# The first run of notifications plans and claims in one step, a slice of notifications per
# call (lua/plan_claim.lua): one call for many is what keeps the ledger cheap at thousands a
# second: a call costs the worker more to encode than the Lua costs Redis to run.
_PLAN_CLAIM_LUA = lua("plan_claim.lua", LEDGER_PRELUDE)
_SCHEDULE_LUA = lua("schedule.lua")
_TAKE_LATER_LUA = lua("take_later.lua")


class LedgerPlanning(LedgerQueries):
    """Scheduled sends, batches, and the plan of each notification's deliveries."""

    def __init__(self, client: Redis, retention_seconds: int) -> None:
        super().__init__(client, retention_seconds)
        self._plan_claim = client.register_script(_PLAN_CLAIM_LUA)
        self._schedule = client.register_script(_SCHEDULE_LUA)
        self._take_later = client.register_script(_TAKE_LATER_LUA)

    # -- scheduled sends ----------------------------------------------------------------------

    async def schedule(self, notifs: Sequence[Notification]) -> None:
        """Hold each until its send_at, out of the inbox and off the broker."""
        for n in notifs:
            assert n.send_at is not None
            arg = {
                "nid": n.notification_id,
                "record": n.to_json().decode(),
                "send_at": repr(n.send_at),
                "retention": int(self.retention + n.send_at - n.created_ts),
            }
            await self._schedule(
                keys=[scheduled_key(n.notification_id), SCHEDULED_KEY], args=[orjson.dumps(arg)]
            )

    async def unschedule(self, nids: Sequence[str]) -> None:
        """Undo `schedule` for notifications whose request failed."""
        if nids:
            await self.r.zrem(SCHEDULED_KEY, *nids)
            await self.r.delete(*(scheduled_key(n) for n in nids))

    async def released(self, nids: Sequence[str]) -> None:
        """These scheduled notifications are planned now: out of the scheduled index."""
        if nids:
            await self.r.zrem(SCHEDULED_KEY, *nids)

    async def take_later(self, limit: int = 1000) -> tuple[list[str], list[tuple[str, str]]]:
        """Scheduled notifications and deferred deliveries that are due, leased (see take_due)."""
        now = time.time()
        arg = {"now": repr(now), "lease_until": repr(now + DUE_LEASE_SECONDS), "limit": limit}
        raw = await self._take_later(keys=[SCHEDULED_KEY, DEFERRED_KEY], args=[orjson.dumps(arg)])
        got = orjson.loads(raw)
        return [text(m) for m in got.get("scheduled") or []], [
            split_member(m) for m in got.get("deferred") or []
        ]

    # -- batches ------------------------------------------------------------------------------

    async def create_batch(
        self, bid: str, owner: str, nids: Sequence[str], task_id: str, created_at: str
    ) -> None:
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(
                batch_key(bid),
                mapping={
                    "batch_id": bid,
                    "owner": owner,
                    "count": len(nids),
                    "task_id": task_id,
                    "created_at": created_at,
                },
            )
            pipe.rpush(batch_ids_key(bid), *nids)
            pipe.hset(batch_counts_key(bid), "_planned", 0)
            for key in (batch_key(bid), batch_ids_key(bid), batch_counts_key(bid)):
                pipe.expire(key, self.retention)
            await pipe.execute()

    async def discard_batch(self, bid: str) -> None:
        await self.r.delete(batch_key(bid), batch_ids_key(bid), batch_counts_key(bid))

    # -- deliveries -----------------------------------------------------------------------------

    async def plan_and_claim(
        self, items: Sequence[tuple[Notification, Sequence[Target | tuple[str, str]]]]
    ) -> list[list[Claimed] | None]:
        """Plan each notification and claim its deliveries that start `sending`.

        None for a notification that was already planned (a repeated run, or cancelled):
        its deliveries are then claimed the ordinary way, one by one. A deferred or skipped
        delivery is created in that state and not claimed.
        """
        if not items:
            return []
        now = str(time.time())
        token = uuid.uuid4().hex
        made: list[int] = []
        targets = [[t if isinstance(t, Target) else Target(*t) for t in devs] for _, devs in items]
        # One call at a time, not a pipeline: a pipeline of scripts costs a SCRIPT EXISTS
        # round trip first.
        for start in range(0, len(items), SCRIPT_SLICE):
            batches: dict[str, int] = {}
            entry_keys: list[str] = []
            spec: list[dict[str, Any]] = []
            for (notif, _), devs in zip(
                items[start : start + SCRIPT_SLICE], targets[start : start + SCRIPT_SLICE], strict=False
            ):
                nid = notif.notification_id
                bid = notif.batch_id or ""
                entry_keys.append(plan_key(nid))
                rows = []
                for t in devs:
                    entry_keys.append(delivery_key(nid, t.dev))
                    row = {"dev": t.dev, "channel": t.channel, "state": t.state}
                    if t.next_at is not None:
                        row["next_at"] = repr(t.next_at)
                    rows.append(row)
                spec.append(
                    {
                        "batch": batches.setdefault(bid, len(batches) + 1) if bid else 0,
                        "bid": bid,
                        "nid": nid,
                        "devices": rows,
                    }
                )
            keys = [SENDING_KEY, DEFERRED_KEY, *(batch_counts_key(bid) for bid in batches), *entry_keys]
            arg = {
                "now": now,
                "retention": self.retention,
                "token": token,
                "batches": len(batches),
                "notifications": spec,
            }
            made += await self._plan_claim(keys=keys, args=[orjson.dumps(arg)])
        out: list[list[Claimed] | None] = []
        for (notif, _), devs, res in zip(items, targets, made, strict=True):
            nid = notif.notification_id
            out.append([Claimed(nid, t.dev, token, 1) for t in devs if t.state == SENDING] if res else None)
        return out
