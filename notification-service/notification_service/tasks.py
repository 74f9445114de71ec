"""Thin Celery tasks: the work lives in delivery.py and the ledger (ledger*.py), run on the process's loop.

Every task is safe to run twice (acks_late redelivers after a lost worker): deliveries are
claimed in Redis before they are sent, so a second run finds nothing left to send.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import redis.exceptions
from celery import signals

from notification_service.delivery import RunResult, chunk_size
from notification_service.ledger import Ledger
from notification_service.ledger_keys import member, split_member
from notification_service.runtime import runtime
from notification_service.worker import app, settings
from shared import NOTIFICATIONS_SCHEDULED, PlatformTask, create_async_redis

log = logging.getLogger(__name__)

# Retries due within this many seconds ride a countdown message; later ones wait in the
# due index for the sweeper (ETA messages sit unacknowledged, and RabbitMQ's
# consumer_timeout would close a channel holding one for 30 minutes).
MAX_COUNTDOWN_SECONDS = 600
# Overdue entries of the due index older than this lost their countdown message.
PUMP_GRACE_SECONDS = 30.0
RETRY_GROUP = 500

_redis_retry: dict[str, Any] = {
    "autoretry_for": (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": 10,
}


def _schedule_retries(retries: list[tuple[str, str, float]]) -> int:
    """Publish countdown messages for near retries, grouped by the second they are due."""
    groups: dict[int, list[str]] = defaultdict(list)
    for nid, dev, delay in retries:
        if delay <= MAX_COUNTDOWN_SECONDS:
            groups[math.ceil(delay)].append(member(nid, dev))
    for countdown, members in groups.items():
        for start in range(0, len(members), RETRY_GROUP):
            retry_deliveries.apply_async(
                kwargs={"pairs": members[start : start + RETRY_GROUP]}, countdown=countdown
            )
    return len(retries)


def _summary(result: RunResult) -> dict[str, Any]:
    return {"deliveries": dict(result.counts), "retries_scheduled": len(result.retries)}


def _deliver_ids(nids: list[str]) -> RunResult:
    rt = runtime(settings)

    async def go() -> RunResult:
        deliverer = await rt.deliverer()
        return await deliverer.deliver_notifications(nids)

    result = rt.run(go())
    _schedule_retries(result.retries)
    return result


@app.task(name="notifications.deliver", bind=True, **_redis_retry)
def deliver(self: PlatformTask, notification_ids: list[str]) -> dict[str, Any]:
    """Deliver notifications to every device of their recipients."""
    result = _deliver_ids(notification_ids)
    out = _summary(result)
    if len(notification_ids) == 1:
        out["notification_id"] = notification_ids[0]
    return out


@app.task(name="notifications.deliver_batch", bind=True, **_redis_retry)
def deliver_batch(self: PlatformTask, batch_id: str) -> dict[str, Any]:
    """Split a batch into chunks that the worker processes share; the first runs here.

    The others are published first, so idle processes start on them at once; the first
    skips a hop through the broker and back to a pool process (tens of milliseconds before
    the batch's first delivery)."""
    rt = runtime(settings)
    size = rt.run(rt.ledger.batch_size(batch_id))
    chunk = chunk_size(size, settings.notify_chunk_size)
    starts = list(range(0, size, chunk))
    for start in starts[1:]:
        deliver_chunk.apply_async(
            kwargs={"batch_id": batch_id, "start": start, "stop": min(size, start + chunk) - 1}
        )
    ids = rt.run(rt.ledger.batch_ids(batch_id, 0, min(size, chunk) - 1))
    return {"batch_id": batch_id, "chunks": max(1, len(starts)), **_summary(_deliver_ids(ids))}


@app.task(name="notifications.deliver_chunk", bind=True, **_redis_retry)
def deliver_chunk(self: PlatformTask, batch_id: str, start: int, stop: int) -> dict[str, Any]:
    rt = runtime(settings)
    ids = rt.run(rt.ledger.batch_ids(batch_id, start, stop))
    return {"batch_id": batch_id, "start": start, **_summary(_deliver_ids(ids))}


@app.task(name="notifications.retry", bind=True, **_redis_retry)
def retry_deliveries(self: PlatformTask, pairs: list[str]) -> dict[str, Any]:
    """Attempt again deliveries that were queued for a retry (or freed by the sweeper)."""
    rt = runtime(settings)

    async def go() -> RunResult:
        deliverer = await rt.deliverer()
        return await deliverer.run([split_member(m) for m in pairs])

    result = rt.run(go())
    _schedule_retries(result.retries)
    return _summary(result)


@app.task(name="notifications.release_scheduled", bind=True, **_redis_retry)
def release_scheduled(self: PlatformTask, notification_ids: list[str]) -> dict[str, Any]:
    """Send scheduled notifications whose send_at has come: inbox, then every device.

    Safe to run twice: the inbox files a notification once (its record is written with NX)
    and the ledger plans it once; it leaves the scheduled index only after both, so a run
    lost halfway is run again when its lease ends.
    """
    rt = runtime(settings)

    async def go() -> RunResult:
        held = await rt.ledger.scheduled_records(notification_ids)
        if held:
            await rt.inbox.land(list(held.values()))
        result = await (await rt.deliverer()).deliver_notifications(list(held))
        await rt.ledger.released(notification_ids)
        return result

    result = rt.run(go())
    _schedule_retries(result.retries)
    return _summary(result)


def publish_later(scheduled: Sequence[str], deferred: Sequence[tuple[str, str]]) -> None:
    """Hand due scheduled notifications and deferred deliveries to the workers."""
    for start in range(0, len(scheduled), RETRY_GROUP):
        release_scheduled.apply_async(
            kwargs={"notification_ids": list(scheduled[start : start + RETRY_GROUP])}
        )
    if scheduled:
        NOTIFICATIONS_SCHEDULED.labels("released").inc(len(scheduled))
    members = [member(nid, dev) for nid, dev in deferred]
    for start in range(0, len(members), RETRY_GROUP):
        retry_deliveries.apply_async(kwargs={"pairs": members[start : start + RETRY_GROUP]})


class LaterPump(threading.Thread):
    """The worker's clock for scheduled sends and quiet hours: every NOTIFY_LATER_POLL_SECONDS
    it takes what has come due from Redis (leased, so workers side by side never take the
    same entry) and publishes it. Held in Redis, not as ETA messages: a worker holds an ETA
    message unacknowledged until it is due, which blocks the queue behind it and dies with
    the broker channel; this survives any restart. Beat's sweeper pumps the same indexes."""

    def __init__(self, interval: float) -> None:
        super().__init__(name="notify-later-pump", daemon=True)
        self.interval = interval
        self.halt = threading.Event()

    def run(self) -> None:
        # A loop and a Redis client of its own: the task runtime's loop belongs to the tasks.
        loop = asyncio.new_event_loop()
        ledger = Ledger(create_async_redis(settings), settings.notify_retention_seconds)
        try:
            while not self.halt.wait(self.interval):
                try:
                    scheduled, deferred = loop.run_until_complete(ledger.take_later())
                    publish_later(scheduled, deferred)
                except Exception as exc:  # Redis or the broker away: the next tick tries again
                    log.warning("pumping due notifications failed: %s", type(exc).__name__)
        finally:
            loop.run_until_complete(ledger.r.aclose())
            loop.close()


_later_pump: LaterPump | None = None


@signals.worker_ready.connect(weak=False)
def _start_later_pump(**_: Any) -> None:
    global _later_pump
    if settings.notify_later_poll_seconds > 0 and _later_pump is None:
        _later_pump = LaterPump(settings.notify_later_poll_seconds)
        _later_pump.start()


@signals.worker_shutdown.connect(weak=False)
def _stop_later_pump(**_: Any) -> None:
    if _later_pump is not None:
        _later_pump.halt.set()
        _later_pump.join(timeout=5)


def _pump(limit: int = 5000) -> int:
    """Hand overdue entries of the due index to workers."""
    rt = runtime(settings)
    due = rt.run(rt.ledger.take_due(limit=limit, grace=PUMP_GRACE_SECONDS))
    members = [member(nid, dev) for nid, dev in due]
    for start in range(0, len(members), RETRY_GROUP):
        retry_deliveries.apply_async(kwargs={"pairs": members[start : start + RETRY_GROUP]})
    return len(members)


@app.task(name="notifications.sweep_stuck", bind=True, **_redis_retry)
def sweep_stuck(self: PlatformTask) -> dict[str, Any]:
    """Beat: free deliveries whose worker was lost mid-send, pump overdue retries, and (as
    the workers' own pump does) due scheduled notifications and deferred deliveries."""
    rt = runtime(settings)
    freed = rt.run(rt.ledger.sweep_stuck(settings.notify_stuck_after_seconds))
    # Freed deliveries are due now; send them without waiting for the grace period.
    due_now = rt.run(rt.ledger.take_due(limit=5000, grace=0.0)) if freed else []
    members = [member(nid, dev) for nid, dev in due_now]
    for start in range(0, len(members), RETRY_GROUP):
        retry_deliveries.apply_async(kwargs={"pairs": members[start : start + RETRY_GROUP]})
    pumped = _pump()
    scheduled, deferred = rt.run(rt.ledger.take_later(limit=5000))
    publish_later(scheduled, deferred)
    return {"freed": freed, "pumped": pumped + len(members), "later": len(scheduled) + len(deferred)}


@app.task(name="notifications.expire_records", bind=True, **_redis_retry)
def expire_records(self: PlatformTask) -> dict[str, Any]:
    """Beat: drop index entries of records that expired (the records carry their own TTL)."""
    rt = runtime(settings)
    index = rt.run(rt.ledger.expire_index_entries())
    inbox = rt.run(rt.inbox.expire_old())
    return {"index_entries": index, "inbox_entries": inbox}
