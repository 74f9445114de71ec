"""The delivery ledger in Redis: notifications, one record per delivery, batches, retries.

Layout (everything under 'n:'; user ids are quoted so ':' cannot cross namespaces):
  n:n:{nid}          string  the notification, JSON, immutable once written
  n:nd:{nid}         hash    planned deliveries: device_id -> channel ('_planned' marks the plan,
                             '_cancelled' a cancellation)
  n:d:{nid}:{dev}    hash    one delivery: status channel attempts error http_status
                             created_at updated_at next_at since token batch_id
  n:da:{nid}:{dev}   list    every attempt: JSON {n, at, http_status, error, latency_ms, outcome}
  n:due              zset    "{nid}|{dev}" -> when the next attempt is due (retries, sweeps)
  n:sending          zset    "{nid}|{dev}" -> when it was claimed (the sweeper's index)
  n:sn:{nid}         string  a scheduled notification, JSON, until its send_at
  n:sched            zset    nid -> send_at of scheduled notifications
  n:deferred         zset    "{nid}|{dev}" -> when the recipient's quiet hours end
  n:b:{batch}        hash    batch_id owner count created_at task_id
  n:bn:{batch}       list    the batch's notification ids, in request order
  n:bc:{batch}       hash    deliveries of the batch by status (kept by the scripts below)
  n:bf:{batch}       list    the batch's failed/gone/expired deliveries, JSON, first 1000

A delivery moves queued -> sending -> delivered | failed | gone | expired, or back to
queued with a next_at for a retry. Planned during the recipient's quiet hours it starts
deferred (claimed like a queued one once they end); on a switched-off channel, skipped;
a queued or deferred one may be cancelled by its sender. Every move is one Lua script that checks the state it
moves from (and, leaving `sending`, the claim token), so a redelivered task, a second
worker or the sweeper can never deliver one message twice or overwrite a final state. The
two moves every delivery makes (plan-and-claim, finish) take many deliveries per call.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from redis.asyncio import Redis

from notification_service.scripts import lua

log = logging.getLogger(__name__)

QUEUED = "queued"
SENDING = "sending"
DELIVERED = "delivered"
FAILED = "failed"
GONE = "gone"
EXPIRED = "expired"
# Quiet hours of the recipient: waits in the deferred index until they end.
DEFERRED = "deferred"
# The recipient switched the channel off; never sent.
SKIPPED = "skipped"
# Its sender cancelled it before it went out.
CANCELLED = "cancelled"
DELIVERY_STATES = (QUEUED, SENDING, DELIVERED, FAILED, GONE, EXPIRED, DEFERRED, SKIPPED, CANCELLED)
FINAL_STATES = frozenset({DELIVERED, FAILED, GONE, EXPIRED, SKIPPED, CANCELLED})
# Deliveries still to go out: a batch holding any is not done.
WAITING_STATES = frozenset({QUEUED, SENDING, DEFERRED})
# Not gone out yet: claimed once due, or cancelled by the sender.
UNSENT_STATES = frozenset({QUEUED, DEFERRED})
# The one place the scripts get the states from: prepended to each, it names every state
# (QUEUED = 'queued', ...) and the set UNSENT, so no script spells a state itself.
STATES_LUA = (
    f"local {', '.join(s.upper() for s in DELIVERY_STATES)} = {', '.join(repr(s) for s in DELIVERY_STATES)}\n"
    f"local UNSENT = {{{', '.join(f'{s} = true' for s in sorted(UNSENT_STATES))}}}\n"
)
MAX_BATCH_FAILURES_KEPT = 1000
DUE_KEY = "n:due"
SENDING_KEY = "n:sending"
# Notifications held until their send_at (id -> when due), and deliveries deferred by quiet
# hours ("{nid}|{dev}" -> when they end). Pumped by the worker's clock and beat's sweeper.
SCHEDULED_KEY = "n:sched"
DEFERRED_KEY = "n:deferred"
# Notifications (plan) or attempts (finish) per script call: Redis runs one call at a time,
# so a call is kept to a few milliseconds.
SCRIPT_SLICE = 250
# A due entry handed to a worker is leased for this long: if the task is lost, it comes due again.
DUE_LEASE_SECONDS = 60.0


def q(user: str) -> str:
    return quote(user, safe="")


def notification_key(nid: str) -> str:
    return f"n:n:{nid}"


def scheduled_key(nid: str) -> str:
    """A scheduled notification's record until it is due (then it moves to n:n and the inbox)."""
    return f"n:sn:{nid}"


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


# Read once at import; each Ledger registers them (EVALSHA; SCRIPT LOAD on a miss).
# The first run of notifications plans and claims in one step, a slice of notifications per
# call (lua/plan_claim.lua): one call for many is what keeps the ledger cheap at thousands a
# second: a call costs the worker more to encode than the Lua costs Redis to run. Finishing
# attempts (lua/finish.lua) takes many per call for the same reason.
_PLAN_CLAIM_LUA = lua("plan_claim.lua", STATES_LUA)
_CLAIM_LUA = lua("claim.lua", STATES_LUA)
_FINISH_LUA = lua("finish.lua", STATES_LUA)
_SWEEP_LUA = lua("sweep.lua", STATES_LUA)
_TAKE_DUE_LUA = lua("take_due.lua")
_SCHEDULE_LUA = lua("schedule.lua")
_TAKE_LATER_LUA = lua("take_later.lua")
_CANCEL_LUA = lua("cancel.lua")
_CANCEL_DELIVERY_LUA = lua("cancel_delivery.lua", STATES_LUA)


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
    # When it is to go out, for a scheduled one (epoch seconds); its TTL counts from then.
    send_at: float | None = None
    # "critical" goes out during the recipient's quiet hours too.
    priority: str = "normal"

    @property
    def expires_ts(self) -> float:
        return (self.send_at or self.created_ts) + self.ttl

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
                "send_at": self.send_at,
                "priority": self.priority,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Notification:
        d = orjson.loads(raw)
        return cls(**d)


@dataclass(frozen=True, slots=True)
class Target:
    """One device a notification is planned for, and the state its delivery starts in."""

    dev: str
    channel: str
    state: str = SENDING
    next_at: float | None = None  # deferred: when the recipient's quiet hours end


@dataclass(frozen=True, slots=True)
class Claimed:
    nid: str
    dev: str
    token: str
    attempt: int


@dataclass(slots=True)
class _Finish:
    """One attempt waiting for the next finish call: its keys, its row of the call's JSON,
    and whom to tell how it went."""

    nid: str
    dev: str
    bid: str
    then: Callable[[int | BaseException], None]
    row: dict[str, Any]


class Ledger:
    """Async access to the ledger for the API and the workers."""

    def __init__(self, client: Redis, retention_seconds: int) -> None:
        self.r = client
        self.retention = retention_seconds
        self._plan_claim = client.register_script(_PLAN_CLAIM_LUA)
        self._pending: list[_Finish] = []
        self._flushing = False
        self._flusher: asyncio.Task[None] | None = None
        self._claim = client.register_script(_CLAIM_LUA)
        self._finish = client.register_script(_FINISH_LUA)
        self._sweep = client.register_script(_SWEEP_LUA)
        self._take_due = client.register_script(_TAKE_DUE_LUA)
        self._schedule = client.register_script(_SCHEDULE_LUA)
        self._take_later = client.register_script(_TAKE_LATER_LUA)
        self._cancel = client.register_script(_CANCEL_LUA)
        self._cancel_delivery = client.register_script(_CANCEL_DELIVERY_LUA)

    # -- notifications ----------------------------------------------------------------------

    async def get_notification(self, nid: str) -> Notification | None:
        """The notification, sent or still scheduled."""
        raw, held = await self.r.mget([notification_key(nid), scheduled_key(nid)])
        found = raw or held
        return Notification.from_json(found) if found else None

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

    async def is_scheduled(self, nid: str) -> bool:
        return await self.r.zscore(SCHEDULED_KEY, nid) is not None

    async def scheduled_records(self, nids: Sequence[str]) -> dict[str, Notification]:
        """The held records of these scheduled notifications that are neither gone nor cancelled."""
        if not nids:
            return {}
        raws = await self.r.mget([scheduled_key(n) for n in nids])
        async with self.r.pipeline(transaction=False) as pipe:
            for nid in nids:
                pipe.hexists(plan_key(nid), "_cancelled")
            cancelled = await pipe.execute()
        return {
            n: Notification.from_json(raw)
            for n, raw, gone in zip(nids, raws, cancelled, strict=True)
            if raw and not gone
        }

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
        return [_s(m) for m in got.get("scheduled") or []], [
            split_member(m) for m in got.get("deferred") or []
        ]

    async def cancel(self, notif: Notification) -> tuple[int, dict[str, int]]:
        """Cancel what has not gone out: (deliveries cancelled or -1 for all, states left alone).

        Before planning the whole notification is cancelled (answer -1); afterwards each
        queued or deferred delivery is, and those already sending or final are counted by state.
        """
        nid, bid = notif.notification_id, notif.batch_id
        counts = batch_counts_key(bid or "-")
        now = repr(time.time())
        arg = {"nid": nid, "now": now, "retention": self.retention, "has_batch": bool(bid)}
        found = _s(await self._cancel(keys=[plan_key(nid), SCHEDULED_KEY, counts], args=[orjson.dumps(arg)]))
        if found == CANCELLED:
            return -1, {}
        plan = (await self.planned([nid]))[nid] or {}
        cancelled, left = 0, dict[str, int]()
        for dev in sorted(plan):
            m = member(nid, dev)
            darg = {"member": m, "now": now, "has_batch": bool(bid)}
            state = _s(
                await self._cancel_delivery(
                    keys=[delivery_key(nid, dev), DUE_KEY, DEFERRED_KEY, counts], args=[orjson.dumps(darg)]
                )
            )
            if state == CANCELLED:
                cancelled += 1
            else:
                left[state] = left.get(state, 0) + 1
        if cancelled:
            await self.r.hset(plan_key(nid), "_cancelled", now)
        return cancelled, left

    async def is_cancelled(self, nid: str) -> bool:
        return bool(await self.r.hexists(plan_key(nid), "_cancelled"))

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
            out[nid] = {_s(k): _s(v) for k, v in raw.items() if not _s(k).startswith("_")}
        return out

    async def claim(
        self, pairs: Sequence[tuple[str, str]], notifs: dict[str, Notification]
    ) -> tuple[list[Claimed], dict[str, int]]:
        """Move queued deliveries to sending; returns those this caller now owns."""
        now = repr(time.time())
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
                        DEFERRED_KEY,
                    ],
                    args=[
                        orjson.dumps(
                            {
                                "member": member(nid, dev),
                                "now": now,
                                "token": token,
                                "expires_at": expires,
                                "has_batch": bool(bid),
                            }
                        )
                    ],
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
        recorded: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def then(outcome: int | BaseException) -> None:
            if isinstance(outcome, BaseException):
                recorded.set_exception(outcome)
            else:
                recorded.set_result(outcome)

        self.finish_soon(
            claim,
            notif,
            channel,
            status,
            error=error,
            http_status=http_status,
            latency_ms=latency_ms,
            outcome=outcome,
            next_at=next_at,
            then=then,
        )
        return bool(await recorded)

    def finish_soon(
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
        then: Callable[[int | BaseException], None],
    ) -> None:
        """`finish` in the next call with every other attempt ending about now.

        Under load hundreds of attempts end together; one round trip and one call for all
        of them instead of one each is most of what a delivery costs beyond its request.
        `then` gets 1 when recorded, 0 when the claim was lost, or the error.
        """
        bid = notif.batch_id if notif is not None else None
        attempt = orjson.dumps(
            {
                "n": claim.attempt,
                "at": _iso(time.time()),
                "http_status": http_status,
                "error": error or None,
                "latency_ms": round(latency_ms, 1),
                "outcome": outcome,
            }
        ).decode()
        failure = ""
        if bid and status not in (QUEUED, DELIVERED):
            failure = orjson.dumps(
                {
                    "notification_id": claim.nid,
                    "device_id": claim.dev,
                    "channel": channel,
                    "status": status,
                    "error": error or None,
                    "http_status": http_status,
                }
            ).decode()
        entry = _Finish(
            claim.nid,
            claim.dev,
            bid or "",
            then,
            {
                "member": member(claim.nid, claim.dev),
                "token": claim.token,
                "status": status,
                "error": error,
                "http_status": "" if http_status is None else str(http_status),
                "attempt": attempt,
                "next_at": "" if next_at is None else str(next_at),
                "batch": 0,  # the batch's pair of keys, numbered when the call is made
                "failure": failure,
            },
        )
        self._pending.append(entry)
        if not self._flushing:
            self._flushing = True
            # Held: the loop keeps only a weak reference to a task.
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(0)  # let the attempts ending in this tick join
                batch, self._pending = self._pending, []
                try:
                    outcomes: Sequence[int | BaseException] = await self._finish_many(batch)
                except BaseException as exc:
                    _tell(batch, [exc] * len(batch))
                    if not isinstance(exc, Exception):
                        raise
                    continue
                _tell(batch, outcomes)
        finally:
            self._flushing = False

    async def _finish_many(self, entries: Sequence[_Finish]) -> list[int]:
        now = str(time.time())
        out: list[int] = []
        for start in range(0, len(entries), SCRIPT_SLICE):
            batches: dict[str, int] = {}
            entry_keys: list[str] = []
            spec: list[dict[str, Any]] = []
            for entry in entries[start : start + SCRIPT_SLICE]:
                row = entry.row
                if entry.bid:
                    row["batch"] = batches.setdefault(entry.bid, len(batches) + 1)
                entry_keys += (delivery_key(entry.nid, entry.dev), attempts_key(entry.nid, entry.dev))
                spec.append(row)
            keys = [DUE_KEY, SENDING_KEY]
            for bid in batches:
                keys += (batch_counts_key(bid), batch_failures_key(bid))
            keys += entry_keys
            arg = {
                "now": now,
                "retention": self.retention,
                "batches": len(batches),
                "failures_kept": MAX_BATCH_FAILURES_KEPT,
                "attempts": spec,
            }
            out += await self._finish(keys=keys, args=[orjson.dumps(arg)])
        return out

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
                    if raw.get("status") in (QUEUED, DEFERRED) and raw.get("next_at")
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
        arg = {"now": repr(now - grace), "lease_until": repr(now + DUE_LEASE_SECONDS), "limit": limit}
        raw = await self._take_due(keys=[DUE_KEY], args=[orjson.dumps(arg)])
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
                    args=[
                        orjson.dumps(
                            {
                                "member": member(nid, dev),
                                "cutoff": cutoff,
                                "now": repr(now),
                                "has_batch": bool(bid),
                            }
                        )
                    ],
                    client=pipe,
                )
            results = await pipe.execute()
        return sum(int(r) for r in results)

    async def expire_index_entries(self, limit: int = 5000) -> int:
        """Drop due/sending/deferred entries whose delivery record has expired away."""
        removed = 0
        for key in (DUE_KEY, SENDING_KEY, DEFERRED_KEY):
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


def _tell(entries: Sequence[_Finish], outcomes: Sequence[int | BaseException]) -> None:
    for entry, outcome in zip(entries, outcomes, strict=True):
        try:
            entry.then(outcome)
        except Exception:
            log.exception("a finish callback failed")


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"
