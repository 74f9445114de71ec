"""The delivery ledger in Redis: notifications, one record per delivery, batches, retries.

Layout (everything under 'n:'; user ids are quoted so ':' cannot cross namespaces):
  n:n:{nid}          string  the notification, JSON, immutable once written
  n:nd:{nid}         hash    planned deliveries: device_id -> channel ('_planned' marks the plan)
  n:d:{nid}:{dev}    hash    one delivery: status channel attempts error http_status
                             created_at updated_at next_at since token batch_id
  n:da:{nid}:{dev}   list    every attempt: JSON {n, at, http_status, error, latency_ms, outcome}
  n:due              zset    "{nid}|{dev}" -> when the next attempt is due (retries, sweeps)
  n:sending          zset    "{nid}|{dev}" -> when it was claimed (the sweeper's index)
  n:b:{batch}        hash    batch_id owner count created_at task_id
  n:bn:{batch}       list    the batch's notification ids, in request order
  n:bc:{batch}       hash    deliveries of the batch by status (kept by the scripts below)
  n:bf:{batch}       list    the batch's failed/gone/expired deliveries, JSON, first 1000

A delivery moves queued -> sending -> delivered | failed | gone | expired, or back to
queued with a next_at for a retry. Every move is one Lua script that checks the state it
moves from (and, leaving `sending`, the claim token), so a redelivered task, a second
worker or the sweeper can never deliver one message twice or overwrite a final state.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from redis.asyncio import Redis

QUEUED = "queued"
SENDING = "sending"
DELIVERED = "delivered"
FAILED = "failed"
GONE = "gone"
EXPIRED = "expired"
DELIVERY_STATES = (QUEUED, SENDING, DELIVERED, FAILED, GONE, EXPIRED)
FINAL_STATES = frozenset({DELIVERED, FAILED, GONE, EXPIRED})
MAX_BATCH_FAILURES_KEPT = 1000
DUE_KEY = "n:due"
SENDING_KEY = "n:sending"
# A due entry handed to a worker is leased for this long: if the task is lost, it comes due again.
DUE_LEASE_SECONDS = 60.0


def q(user: str) -> str:
    return quote(user, safe="")


def notification_key(nid: str) -> str:
    return f"n:n:{nid}"


def plan_key(nid: str) -> str:
    return f"n:nd:{nid}"


def delivery_key(nid: str, dev: str) -> str:
    return f"n:d:{nid}:{dev}"


def attempts_key(nid: str, dev: str) -> str:
    return f"n:da:{nid}:{dev}"


def batch_key(bid: str) -> str:
    return f"n:b:{bid}"


def batch_ids_key(bid: str) -> str:
    return f"n:bn:{bid}"


def batch_counts_key(bid: str) -> str:
    return f"n:bc:{bid}"


def batch_failures_key(bid: str) -> str:
    return f"n:bf:{bid}"


def member(nid: str, dev: str) -> str:
    return f"{nid}|{dev}"


def split_member(value: Any) -> tuple[str, str]:
    text = value.decode() if isinstance(value, bytes) else str(value)
    nid, _, dev = text.partition("|")
    return nid, dev


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# The first run of a notification plans and claims in one step: its deliveries are created
# straight in `sending`, owned by the caller's token, attempt 1.
# KEYS: plan, counts, sending, then one delivery per device. ARGV: now, retention, has_batch,
# batch_id, token, then (device_id, channel, member) per device. 0 when already planned.
_PLAN_CLAIM_LUA = """
if redis.call('HSETNX', KEYS[1], '_planned', ARGV[1]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[2])
for i = 4, #KEYS do
  local dkey = KEYS[i]
  local j = 6 + 3 * (i - 4)
  redis.call('HSET', KEYS[1], ARGV[j], ARGV[j + 1])
  redis.call('HSET', dkey, 'status', 'sending', 'channel', ARGV[j + 1], 'attempts', 1,
             'created_at', ARGV[1], 'updated_at', ARGV[1], 'batch_id', ARGV[4], 'error', '',
             'since', ARGV[1], 'token', ARGV[5])
  redis.call('EXPIRE', dkey, ARGV[2])
  redis.call('ZADD', KEYS[3], ARGV[1], ARGV[j + 2])
end
if ARGV[3] == '1' then
  redis.call('HINCRBY', KEYS[2], '_planned', 1)
  if #KEYS > 3 then redis.call('HINCRBY', KEYS[2], 'sending', #KEYS - 3) end
end
return 1
"""

# KEYS: delivery, due, sending, counts. ARGV: member, now, token, expires_at, has_batch.
_CLAIM_LUA = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then redis.call('ZREM', KEYS[2], ARGV[1]) return 'missing' end
if st ~= 'queued' then redis.call('ZREM', KEYS[2], ARGV[1]) return st end
local nxt = tonumber(redis.call('HGET', KEYS[1], 'next_at') or '0') or 0
if nxt > tonumber(ARGV[2]) + 0.5 then return 'not_due' end
redis.call('ZREM', KEYS[2], ARGV[1])
if tonumber(ARGV[2]) >= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'status', 'expired', 'updated_at', ARGV[2],
             'error', 'the TTL passed before it could be delivered')
  if ARGV[5] == '1' then
    redis.call('HINCRBY', KEYS[4], 'queued', -1)
    redis.call('HINCRBY', KEYS[4], 'expired', 1)
  end
  return 'expired'
end
redis.call('HSET', KEYS[1], 'status', 'sending', 'since', ARGV[2], 'token', ARGV[3],
           'updated_at', ARGV[2])
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
if ARGV[5] == '1' then
  redis.call('HINCRBY', KEYS[4], 'queued', -1)
  redis.call('HINCRBY', KEYS[4], 'sending', 1)
end
return n
"""

# KEYS: delivery, attempts, due, sending, counts, failures.
# ARGV: member, token, new_status, now, error, http_status, attempt_json, next_at, has_batch,
#       failure_json, retention
_FINISH_LUA = """
if redis.call('HGET', KEYS[1], 'status') ~= 'sending' then return 0 end
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then return 0 end
local new = ARGV[3]
redis.call('HSET', KEYS[1], 'status', new, 'updated_at', ARGV[4], 'error', ARGV[5],
           'http_status', ARGV[6])
redis.call('HDEL', KEYS[1], 'token', 'since')
redis.call('RPUSH', KEYS[2], ARGV[7])
redis.call('EXPIRE', KEYS[2], ARGV[11])
redis.call('ZREM', KEYS[4], ARGV[1])
if new == 'queued' then
  redis.call('HSET', KEYS[1], 'next_at', ARGV[8])
  redis.call('ZADD', KEYS[3], ARGV[8], ARGV[1])
end
if ARGV[9] == '1' then
  redis.call('HINCRBY', KEYS[5], 'sending', -1)
  redis.call('HINCRBY', KEYS[5], new, 1)
  if new ~= 'queued' and new ~= 'delivered' and redis.call('LLEN', KEYS[6]) < 1000 then
    redis.call('RPUSH', KEYS[6], ARGV[10])
    redis.call('EXPIRE', KEYS[6], ARGV[11])
  end
end
return 1
"""

# KEYS: delivery, sending, due, counts. ARGV: member, cutoff, now, has_batch.
# A claim older than the cutoff lost its worker: back to queued, due now.
_SWEEP_LUA = """
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'sending' then redis.call('ZREM', KEYS[2], ARGV[1]) return 0 end
local since = tonumber(redis.call('HGET', KEYS[1], 'since') or '0') or 0
if since > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued', 'next_at', ARGV[3], 'updated_at', ARGV[3],
           'error', 'the worker was lost while sending; queued again')
redis.call('HDEL', KEYS[1], 'token', 'since')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
if ARGV[4] == '1' then
  redis.call('HINCRBY', KEYS[4], 'sending', -1)
  redis.call('HINCRBY', KEYS[4], 'queued', 1)
end
return 1
"""

# KEYS: due. ARGV: now, lease_until, limit. Hands out due entries, leasing them.
_TAKE_DUE_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], m) end
return due
"""


@dataclass(frozen=True, slots=True)
class Notification:
    notification_id: str
    sender: str
    user_id: str
    title: str
    message: str
    data: dict[str, Any]
    ttl: int
    urgency: str
    topic: str
    created_at: str
    created_ts: float
    batch_id: str | None = None
    task_id: str | None = None

    @property
    def expires_ts(self) -> float:
        return self.created_ts + self.ttl

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "notification_id": self.notification_id,
                "sender": self.sender,
                "user_id": self.user_id,
                "title": self.title,
                "message": self.message,
                "data": self.data,
                "ttl": self.ttl,
                "urgency": self.urgency,
                "topic": self.topic,
                "created_at": self.created_at,
                "created_ts": self.created_ts,
                "batch_id": self.batch_id,
                "task_id": self.task_id,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Notification:
        d = orjson.loads(raw)
        return cls(**d)


@dataclass(frozen=True, slots=True)
class Claimed:
    nid: str
    dev: str
    token: str
    attempt: int


class Ledger:
    """Async access to the ledger for the API and the workers."""

    def __init__(self, client: Redis, retention_seconds: int) -> None:
        self.r = client
        self.retention = retention_seconds
        self._plan_claim = client.register_script(_PLAN_CLAIM_LUA)
        self._pending: list[tuple[list[Any], list[Any], asyncio.Future[Any]]] = []
        self._flushing = False
        self._claim = client.register_script(_CLAIM_LUA)
        self._finish = client.register_script(_FINISH_LUA)
        self._sweep = client.register_script(_SWEEP_LUA)
        self._take_due = client.register_script(_TAKE_DUE_LUA)

    # -- notifications ----------------------------------------------------------------------

    async def get_notification(self, nid: str) -> Notification | None:
        raw = await self.r.get(notification_key(nid))
        return Notification.from_json(raw) if raw else None

    async def get_notifications(self, nids: Sequence[str]) -> dict[str, Notification]:
        if not nids:
            return {}
        raws = await self.r.mget([notification_key(n) for n in nids])
        return {n: Notification.from_json(raw) for n, raw in zip(nids, raws, strict=True) if raw}

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

    async def batch(self, bid: str) -> dict[str, str] | None:
        raw = await self.r.hgetall(batch_key(bid))
        return {_s(k): _s(v) for k, v in raw.items()} if raw else None

    async def batch_ids(self, bid: str, start: int = 0, stop: int = -1) -> list[str]:
        raw = await self.r.lrange(batch_ids_key(bid), start, stop)
        return [_s(x) for x in raw]

    async def batch_size(self, bid: str) -> int:
        return int(await self.r.llen(batch_ids_key(bid)))

    async def batch_counts(self, bid: str) -> dict[str, int]:
        raw = await self.r.hgetall(batch_counts_key(bid))
        counts = {state: 0 for state in DELIVERY_STATES}
        for k, v in raw.items():
            counts[_s(k)] = max(0, int(v))
        counts.setdefault("_planned", 0)
        return counts

    async def batch_failures(self, bid: str, limit: int = 100) -> list[dict[str, Any]]:
        raw = await self.r.lrange(batch_failures_key(bid), 0, limit - 1)
        return [orjson.loads(x) for x in raw]

    # -- deliveries -----------------------------------------------------------------------------

    async def plan_and_claim(
        self, items: Sequence[tuple[Notification, list[tuple[str, str]]]]
    ) -> list[list[Claimed] | None]:
        """Plan each notification and claim all its deliveries for a first attempt.

        None for a notification that was already planned (a repeated run): its deliveries
        are then claimed the ordinary way, one by one.
        """
        now = str(time.time())
        token = uuid.uuid4().hex
        async with self.r.pipeline(transaction=False) as pipe:
            for notif, devices in items:
                nid = notif.notification_id
                bid = notif.batch_id or ""
                keys = [plan_key(nid), batch_counts_key(bid or "-"), SENDING_KEY]
                args: list[Any] = [now, self.retention, "1" if bid else "0", bid, token]
                for dev, channel in devices:
                    keys.append(delivery_key(nid, dev))
                    args += [dev, channel, member(nid, dev)]
                await self._plan_claim(keys=keys, args=args, client=pipe)
            results = await pipe.execute()
        out: list[list[Claimed] | None] = []
        for (notif, devices), res in zip(items, results, strict=True):
            nid = notif.notification_id
            out.append([Claimed(nid, dev, token, 1) for dev, _ in devices] if res else None)
        return out

    async def planned(self, nids: Sequence[str]) -> dict[str, dict[str, str] | None]:
        """Each notification's deliveries as device_id -> channel; None when not planned yet."""
        async with self.r.pipeline(transaction=False) as pipe:
            for nid in nids:
                pipe.hgetall(plan_key(nid))
            rows = await pipe.execute()
        out: dict[str, dict[str, str] | None] = {}
        for nid, raw in zip(nids, rows, strict=True):
            if not raw:
                out[nid] = None
                continue
            out[nid] = {_s(k): _s(v) for k, v in raw.items() if _s(k) != "_planned"}
        return out

    async def claim(
        self, pairs: Sequence[tuple[str, str]], notifs: dict[str, Notification]
    ) -> tuple[list[Claimed], dict[str, int]]:
        """Move queued deliveries to sending; returns those this caller now owns."""
        now = time.time()
        tokens = [uuid.uuid4().hex for _ in pairs]
        async with self.r.pipeline(transaction=False) as pipe:
            for (nid, dev), token in zip(pairs, tokens, strict=True):
                notif = notifs.get(nid)
                expires = notif.expires_ts if notif is not None else 0.0
                bid = notif.batch_id if notif is not None else None
                await self._claim(
                    keys=[
                        delivery_key(nid, dev),
                        DUE_KEY,
                        SENDING_KEY,
                        batch_counts_key(bid or "-"),
                    ],
                    args=[member(nid, dev), now, token, expires, "1" if bid else "0"],
                    client=pipe,
                )
            results = await pipe.execute()
        claimed: list[Claimed] = []
        skipped: dict[str, int] = {}
        for (nid, dev), token, outcome in zip(pairs, tokens, results, strict=True):
            # The script answers the attempt number when it claimed, else the state it found.
            if isinstance(outcome, int):
                claimed.append(Claimed(nid, dev, token, outcome))
            else:
                skipped[_s(outcome)] = skipped.get(_s(outcome), 0) + 1
        return claimed, skipped

    async def finish(
        self,
        claim: Claimed,
        notif: Notification | None,
        channel: str,
        status: str,
        *,
        error: str,
        http_status: int | None,
        latency_ms: float,
        outcome: str,
        next_at: float | None = None,
    ) -> bool:
        """Record the attempt and move the delivery out of `sending`, if the claim still holds."""
        now = time.time()
        bid = notif.batch_id if notif is not None else None
        attempt = orjson.dumps(
            {
                "n": claim.attempt,
                "at": _iso(now),
                "http_status": http_status,
                "error": error or None,
                "latency_ms": round(latency_ms, 1),
                "outcome": outcome,
            }
        )
        failure = orjson.dumps(
            {
                "notification_id": claim.nid,
                "device_id": claim.dev,
                "channel": channel,
                "status": status,
                "error": error or None,
                "http_status": http_status,
            }
        )
        res = await self._coalesced_finish(
            [
                delivery_key(claim.nid, claim.dev),
                attempts_key(claim.nid, claim.dev),
                DUE_KEY,
                SENDING_KEY,
                batch_counts_key(bid or "-"),
                batch_failures_key(bid or "-"),
            ],
            [
                member(claim.nid, claim.dev),
                claim.token,
                status,
                now,
                error,
                "" if http_status is None else http_status,
                attempt,
                next_at if next_at is not None else "",
                "1" if bid else "0",
                failure,
                self.retention,
            ],
        )
        return bool(res)

    async def _coalesced_finish(self, keys: list[Any], args: list[Any]) -> Any:
        """Run the finish script in one pipeline with every other finish of this moment.

        Under load hundreds of attempts end together; one round trip for all of them
        instead of one each is most of what a delivery costs beyond its HTTP request.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((keys, args, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(0)  # let the attempts ending in this tick join
                batch, self._pending = self._pending, []
                try:
                    async with self.r.pipeline(transaction=False) as pipe:
                        for keys, args, _ in batch:
                            await self._finish(keys=keys, args=args, client=pipe)
                        results = await pipe.execute(raise_on_error=False)
                except Exception as exc:
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), res in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(res, Exception):
                        future.set_exception(res)
                    else:
                        future.set_result(res)
        finally:
            self._flushing = False

    async def deliveries(self, nid: str) -> tuple[bool, list[dict[str, Any]]]:
        """Whether the deliveries are planned, and their records, each with its attempts."""
        found = (await self.planned([nid]))[nid]
        plan = found or {}
        devs = sorted(plan)
        async with self.r.pipeline(transaction=False) as pipe:
            for dev in devs:
                pipe.hgetall(delivery_key(nid, dev))
                pipe.lrange(attempts_key(nid, dev), 0, -1)
            rows = await pipe.execute()
        out = []
        for i, dev in enumerate(devs):
            raw = {_s(k): _s(v) for k, v in rows[2 * i].items()}
            if not raw:
                continue
            attempts = [orjson.loads(a) for a in rows[2 * i + 1]]
            out.append(
                {
                    "device_id": dev,
                    "channel": raw.get("channel", plan[dev]),
                    "status": raw.get("status", QUEUED),
                    "attempts": int(raw.get("attempts", "0")),
                    "error": raw.get("error") or None,
                    "http_status": int(raw["http_status"]) if raw.get("http_status") else None,
                    "next_attempt_at": _iso(float(raw["next_at"]))
                    if raw.get("status") == QUEUED and raw.get("next_at")
                    else None,
                    "updated_at": _iso(float(raw["updated_at"])) if raw.get("updated_at") else None,
                    "history": attempts,
                }
            )
        return found is not None, out

    # -- retries and the sweeper --------------------------------------------------------------

    async def take_due(self, limit: int = 1000, grace: float = 0.0) -> list[tuple[str, str]]:
        """Entries due at least `grace` seconds ago, leased so a lost hand-off comes due again."""
        now = time.time()
        raw = await self._take_due(keys=[DUE_KEY], args=[now - grace, now + DUE_LEASE_SECONDS, limit])
        return [split_member(m) for m in raw]

    async def sweep_stuck(self, stuck_after: float, limit: int = 1000) -> int:
        now = time.time()
        cutoff = now - stuck_after
        stuck = await self.r.zrangebyscore(SENDING_KEY, "-inf", cutoff, start=0, num=limit)
        if not stuck:
            return 0
        pairs = [split_member(m) for m in stuck]
        notifs = await self.get_notifications(sorted({nid for nid, _ in pairs}))
        async with self.r.pipeline(transaction=False) as pipe:
            for nid, dev in pairs:
                notif = notifs.get(nid)
                bid = notif.batch_id if notif is not None else None
                await self._sweep(
                    keys=[
                        delivery_key(nid, dev),
                        SENDING_KEY,
                        DUE_KEY,
                        batch_counts_key(bid or "-"),
                    ],
                    args=[member(nid, dev), cutoff, now, "1" if bid else "0"],
                    client=pipe,
                )
            results = await pipe.execute()
        return sum(int(r) for r in results)

    async def expire_index_entries(self, limit: int = 5000) -> int:
        """Drop due/sending entries whose delivery record has expired away."""
        removed = 0
        for key in (DUE_KEY, SENDING_KEY):
            entries = await self.r.zrange(key, 0, limit - 1)
            if not entries:
                continue
            async with self.r.pipeline(transaction=False) as pipe:
                for m in entries:
                    pipe.exists(delivery_key(*split_member(m)))
                exists = await pipe.execute()
            gone: list[Any] = [m for m, e in zip(entries, exists, strict=True) if not e]
            if gone:
                removed += int(await self.r.zrem(key, *gone))
        return removed


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"
