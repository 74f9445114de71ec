"""The scheduler: runs each due tick of every schedule once, however many of these run.

Run: python -m task_service.scheduler (make run, compose and k8s start one; more are safe).

Each loop reads the due index (schedules.py) and, for each due schedule, claims the tick with
a compare-and-set of its next run (lua/claim_schedule.lua). The winner submits the target as
the schedule's owner through the endpoint's own submission path (targets.py), so the task is
an ordinary task of theirs. The next run is computed strictly after now, so a scheduler that
returns after downtime runs a missed tick once, never as a burst.

A tick is claimed before its task is published: a scheduler killed between the two loses that
one tick (at most once), rather than risking a second run of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from typing import Any

from redis.exceptions import RedisError

from shared import (
    SCHEDULE_RUNS,
    SCHEDULE_RUNS_LATE,
    SCHEDULE_TICKS_SKIPPED,
    SCHEDULES_OVERDUE,
    AppError,
    Principal,
    ServiceUnavailable,
    TaskRecords,
    configure_logging,
    create_async_redis,
    metrics_registry,
)
from task_service.remote_targets import REMOTE_TARGETS, submit_remote
from task_service.schedules import Schedules, schedule_key, timing_of, to_ms
from task_service.settings import TaskSettings
from task_service.targets import prepare_target, submit_prepared

log = logging.getLogger("task_service.scheduler")

POLL_SECONDS = 0.5
LATE_MS = 30_000
OVERDUE_MS = 60_000
REMOTE_ATTEMPTS = 3  # a run's calls to scraping- or notification-service, 0.5 s then 1 s apart
_SET_TASK_LUA = (
    "if redis.call('exists', KEYS[1]) == 1 then redis.call('hset', KEYS[1], 'last_task_id', ARGV[1]) end"
)


class Scheduler:
    def __init__(self, settings: TaskSettings) -> None:
        from task_service.worker import app as celery_app

        celery_app.conf.result_backend = "disabled://"  # it only publishes, as the API does
        self.settings = settings
        self.celery = celery_app
        self.redis = create_async_redis(settings)
        self.records = TaskRecords(self.redis, settings.result_expires_seconds)
        self.schedules = Schedules(self.redis)
        self.stopping = asyncio.Event()

    async def run_due(self) -> int:
        """Run every tick due now; the number this scheduler won."""
        now_ms = to_ms(time.time())
        won = 0
        for schedule_id, due_ms in await self.schedules.due(now_ms):
            if await self.fire(schedule_id, due_ms):
                won += 1
        SCHEDULES_OVERDUE.set(await self.schedules.overdue(to_ms(time.time()), OVERDUE_MS))
        return won

    async def fire(self, schedule_id: str, due_ms: int) -> bool:
        doc = await self.schedules.get(schedule_id)
        if doc is None or doc["paused"]:
            return False  # deleted or paused between the read and now: the claim would fail too
        now_ms = to_ms(time.time())
        timing = timing_of(doc)
        task_id = str(uuid.uuid4())
        if not await self.schedules.claim(schedule_id, due_ms, timing.next_after(now_ms), task_id):
            return False  # another scheduler ran this tick
        skipped = timing.missed_between(due_ms, now_ms)
        if skipped:
            SCHEDULE_TICKS_SKIPPED.inc(skipped)
        if now_ms - due_ms > LATE_MS:
            SCHEDULE_RUNS_LATE.inc()
        owner = Principal(sub=doc["owner"], scopes=frozenset({"tasks"}))
        target: dict[str, Any] = doc["target"]
        if target.get("path") in REMOTE_TARGETS:
            return await self.fire_remote(doc, due_ms, skipped)
        try:
            prepared = prepare_target(target["path"], target["body"], self.settings, where="target.body")
            await submit_prepared(
                celery_app=self.celery,
                records=self.records,
                redis=self.redis,
                user=owner,
                prepared=prepared,
                task_id=task_id,
            )
        except (AppError, KeyError) as exc:
            SCHEDULE_RUNS.labels("failed").inc()
            log.warning("schedule %s: run failed: %s", schedule_id, exc)
            return True
        SCHEDULE_RUNS.labels("fired").inc()
        log.info("schedule %s ran task %s (%d missed ticks folded in)", schedule_id, task_id, skipped)
        return True

    async def fire_remote(self, doc: dict[str, Any], due_ms: int, skipped: int) -> bool:
        """Submit a claimed tick to the target's service as the owner (remote_targets.py).

        Idempotency-Key schedule:{id}:{due}: a call retried after a lost answer submits once.
        """
        schedule_id, target = doc["schedule_id"], doc["target"]
        key = f"schedule:{schedule_id}:{due_ms}"
        try:
            for attempt in range(REMOTE_ATTEMPTS):
                try:
                    task_id = await submit_remote(
                        target["path"], target["body"], doc["owner"], self.settings, key
                    )
                    break
                except ServiceUnavailable:
                    # Down, or the answer was lost: the same key again submits at most once.
                    if attempt + 1 == REMOTE_ATTEMPTS:
                        raise
                    await asyncio.sleep(0.5 * 2**attempt)
        except AppError as exc:  # e.g. 429 model_budget_exceeded, a 422, or the service is down
            SCHEDULE_RUNS.labels("failed").inc()
            log.warning("schedule %s: run failed: %s %s", schedule_id, exc.code, exc)
            return True
        if task_id is not None:
            # The claim wrote an id of its own; the target chose the task's. Never recreate a
            # schedule deleted in between.
            await self.redis.eval(_SET_TASK_LUA, 1, schedule_key(schedule_id), task_id)  # type: ignore[misc]
        SCHEDULE_RUNS.labels("fired").inc()
        log.info(
            "schedule %s ran %s task %s (%d missed ticks folded in)",
            schedule_id,
            target["path"],
            task_id,
            skipped,
        )
        return True

    async def loop(self) -> None:
        log.info("scheduler started")
        while not self.stopping.is_set():
            try:
                await self.run_due()
            except (RedisError, OSError) as exc:
                log.warning("scheduler: Redis unavailable (%s); retrying", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), POLL_SECONDS)
        await self.redis.aclose()
        log.info("scheduler stopped")


def serve_metrics(settings: TaskSettings) -> None:
    from prometheus_client import start_http_server

    if settings.scheduler_metrics_port:
        start_http_server(settings.scheduler_metrics_port, addr=settings.host, registry=metrics_registry())
        log.info("scheduler metrics on %s:%s", settings.host, settings.scheduler_metrics_port)


async def main() -> None:
    settings = TaskSettings()
    configure_logging("scheduler", settings.log_level)
    serve_metrics(settings)
    scheduler = Scheduler(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, scheduler.stopping.set)
    await scheduler.loop()


if __name__ == "__main__":
    asyncio.run(main())
