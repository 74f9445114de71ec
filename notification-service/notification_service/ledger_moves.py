"""The delivery state machine: claiming deliveries for an attempt, recording how attempts
ended, the retries coming due, the sweeper taking back lost claims, and cancelling.

A delivery moves queued -> sending -> delivered | failed | gone | expired, or back to
queued with a next_at for a retry. Planned during the recipient's quiet hours it starts
deferred (claimed like a queued one once they end); on a switched-off channel, skipped;
a queued or deferred one may be cancelled by its sender. Every move is one Lua script
(lua/*.lua) that checks the state it moves from (and, leaving `sending`, the claim token),
so a redelivered task, a second worker or the sweeper can never deliver one message twice
or overwrite a final state. Finishing, like planning, takes many deliveries per call.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from notification_service.ledger_keys import (
    CANCELLED,
    DEFERRED_KEY,
    DELIVERED,
    DUE_KEY,
    DUE_LEASE_SECONDS,
    LEDGER_PRELUDE,
    MAX_BATCH_FAILURES_KEPT,
    QUEUED,
    SCHEDULED_KEY,
    SCRIPT_SLICE,
    SENDING_KEY,
    Claimed,
    attempts_key,
    batch_counts_key,
    batch_failures_key,
    delivery_key,
    iso,
    member,
    plan_key,
    split_member,
    text,
)
from notification_service.ledger_queries import LedgerQueries
from notification_service.notification import Notification
from notification_service.scripts import lua

log = logging.getLogger(__name__)

# Read once at import; each Ledger registers them (EVALSHA; SCRIPT LOAD on a miss).
# Finishing takes many attempts per call (lua/finish.lua), for the reason planning does.
_CLAIM_LUA = lua("claim.lua", LEDGER_PRELUDE)
_FINISH_LUA = lua("finish.lua", LEDGER_PRELUDE)
_SWEEP_LUA = lua("sweep.lua", LEDGER_PRELUDE)
_TAKE_DUE_LUA = lua("take_due.lua")
_CANCEL_LUA = lua("cancel.lua")
_CANCEL_DELIVERY_LUA = lua("cancel_delivery.lua", LEDGER_PRELUDE)


@dataclass(slots=True)
class _Finish:
    """One attempt waiting for the next finish call: its keys, its row of the call's JSON,
    and whom to tell how it went."""

    nid: str
    dev: str
    bid: str
    then: Callable[[int | BaseException], None]
    row: dict[str, Any]


class LedgerMoves(LedgerQueries):
    """Every move of a delivery after its plan, each checked by a script."""

    def __init__(self, client: Redis, retention_seconds: int) -> None:
        super().__init__(client, retention_seconds)
        self._pending: list[_Finish] = []
        self._flushing = False
        self._flusher: asyncio.Task[None] | None = None
        self._claim = client.register_script(_CLAIM_LUA)
        self._finish = client.register_script(_FINISH_LUA)
        self._sweep = client.register_script(_SWEEP_LUA)
        self._take_due = client.register_script(_TAKE_DUE_LUA)
        self._cancel = client.register_script(_CANCEL_LUA)
        self._cancel_delivery = client.register_script(_CANCEL_DELIVERY_LUA)

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
                skipped[text(outcome)] = skipped.get(text(outcome), 0) + 1
        return claimed, skipped

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
        """Record the attempt and move the delivery out of `sending`, if the claim still holds,
        in the next call with every other attempt ending about now.

        Under load hundreds of attempts end together; one round trip and one call for all
        of them instead of one each is most of what a delivery costs beyond its request.
        `then` gets 1 when recorded, 0 when the claim was lost, or the error.
        """
        bid = notif.batch_id if notif is not None else None
        attempt = orjson.dumps(
            {
                "n": claim.attempt,
                "at": iso(time.time()),
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

    # -- cancelling ---------------------------------------------------------------------------

    async def cancel(self, notif: Notification) -> tuple[int, dict[str, int]]:
        """Cancel what has not gone out: (deliveries cancelled or -1 for all, states left alone).

        Before planning the whole notification is cancelled (answer -1); afterwards each
        queued or deferred delivery is, and those already sending or final are counted by state.
        """
        nid, bid = notif.notification_id, notif.batch_id
        counts = batch_counts_key(bid or "-")
        now = repr(time.time())
        arg = {"nid": nid, "now": now, "retention": self.retention, "has_batch": bool(bid)}
        found = text(
            await self._cancel(keys=[plan_key(nid), SCHEDULED_KEY, counts], args=[orjson.dumps(arg)])
        )
        if found == CANCELLED:
            return -1, {}
        plan = (await self.planned([nid]))[nid] or {}
        cancelled, left = 0, dict[str, int]()
        for dev in sorted(plan):
            m = member(nid, dev)
            darg = {"member": m, "now": now, "has_batch": bool(bid)}
            state = text(
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


def _tell(entries: Sequence[_Finish], outcomes: Sequence[int | BaseException]) -> None:
    for entry, outcome in zip(entries, outcomes, strict=True):
        try:
            entry.then(outcome)
        except Exception:
            log.exception("a finish callback failed")
