"""The scheduler: runs each due tick of every schedule once, however many of these run.

Run: python -m task_service.scheduler (make run, compose and k8s start one; more are safe).

Each loop reads the due index (schedules.py) and, for each due schedule, claims the tick with
a compare-and-set of its next run (lua/claim_schedule.lua). The winner submits the target as
the schedule's owner through the endpoint's own submission path (targets.py), so the task is
an ordinary task of theirs. The next run is computed strictly after now, so a scheduler that
returns after downtime runs a missed tick once, never as a burst.

A claimed tick is never lost. The claim puts the run in flight in the same step, with its task
id and the target as claimed; the claimer takes it out once the submission is done (queued, or
refused for good: a 4xx of the target, the broker down). Each loop also looks for runs in
flight longer than LEASE_MS: their scheduler was killed (or lost Redis) part-way. One scheduler
takes each over (lua/take_over_run.lua, a compare-and-set of its claim time) and submits it
again, as claimed, so that a submission which got through before the crash is not made twice:
a task-service task keeps the claimed task id and is left alone once it reached its queue
(shared.was_queued; recorded but not queued, it is submitted again); a scraping or notification
run is sent with the same Idempotency-Key, schedule:{id}:{due}, and the target service answers
the task it made. (An Idempotency-Key would not do for task-service's own tasks: it is claimed
before the task is recorded and queued, so a scheduler killed in between would leave a key that
answers a task which does not exist.) A tick of a schedule deleted in between is dropped. A
scheduler stalled, not dead, for longer than the lease between recording its task and queueing
it could see the task queued twice under its one id; the lease is far above those two Redis
round trips. Calls to a target service that outlast the lease (REMOTE_ATTEMPTS, each up to
10 s) may be repeated by the taker: with the same key, still one task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid

from redis.exceptions import RedisError

from shared import (
    SCHEDULE_RUNS,
    SCHEDULE_RUNS_LATE,
    SCHEDULE_RUNS_RECOVERED,
    SCHEDULE_TICKS_SKIPPED,
    SCHEDULES_OVERDUE,
    AppError,
    Principal,
    QueueName,
    ServiceUnavailable,
    TaskRecords,
    configure_logging,
    create_async_redis,
    metrics_registry,
    read_lua,
    was_queued,
)
from task_service.remote_targets import REMOTE_TARGETS, submit_remote
from task_service.schedules import Run, Schedules, schedule_key, timing_of, to_ms
from task_service.settings import TaskSettings
from task_service.targets import prepare_target, submit_prepared

log = logging.getLogger("task_service.scheduler")

POLL_SECONDS = 0.5
LATE_MS = 30_000
OVERDUE_MS = 60_000
LEASE_MS = 15_000  # a run in flight this long was claimed by a scheduler that stopped
REMOTE_ATTEMPTS = 3  # a run's calls to scraping- or notification-service, 0.5 s then 1 s apart
_SET_TASK_LUA = read_lua("task_service", "set_last_task.lua")


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
        """Run every tick due now, then finish runs other schedulers left; the ticks this one won."""
        now_ms = to_ms(time.time())
        won = 0
        for schedule_id, due_ms in await self.schedules.due(now_ms):
            if await self.fire(schedule_id, due_ms):
                won += 1
        await self.recover(to_ms(time.time()))
        SCHEDULES_OVERDUE.set(await self.schedules.overdue(to_ms(time.time()), OVERDUE_MS))
        return won

    async def fire(self, schedule_id: str, due_ms: int) -> bool:
        doc = await self.schedules.get(schedule_id)
        if doc is None or doc["paused"]:
            return False  # deleted or paused between the read and now: the claim would fail too
        now_ms = to_ms(time.time())
        timing = timing_of(doc)
        run = await self.schedules.claim(doc, due_ms, timing.next_after(now_ms), str(uuid.uuid4()), now_ms)
        if run is None:
            return False  # another scheduler ran this tick
        skipped = timing.missed_between(due_ms, now_ms)
        if skipped:
            SCHEDULE_TICKS_SKIPPED.inc(skipped)
        if now_ms - due_ms > LATE_MS:
            SCHEDULE_RUNS_LATE.inc()
        await self.submit(run, skipped)
        # Not in a finally: a run cut short (Redis lost, the process stopped) stays in flight
        # for recover() to finish.
        await self.schedules.finish(run.task_id)
        return True

    async def recover(self, now_ms: int) -> int:
        """Finish the runs whose scheduler stopped part-way; the number this one took over."""
        taken = 0
        for task_id, claimed_ms in await self.schedules.stale(now_ms - LEASE_MS):
            run = await self.schedules.take_over(task_id, claimed_ms, now_ms)
            if run is None:
                continue  # finished meanwhile, or another scheduler took it
            taken += 1
            if await self.schedules.get(run.schedule_id) is None:
                log.info("schedule %s: deleted; its unfinished run %s is dropped", run.schedule_id, task_id)
            else:
                SCHEDULE_RUNS_RECOVERED.inc()
                log.warning(
                    "schedule %s: the run of tick %s (task %s) was left unfinished; finishing it",
                    run.schedule_id,
                    run.due_ms,
                    task_id,
                )
                await self.submit(run, recovered=True)
            await self.schedules.finish(task_id)
        return taken

    async def submit(self, run: Run, skipped: int = 0, *, recovered: bool = False) -> None:
        """Submit a claimed run as its owner; a refusal for good is logged and counted."""
        if run.target.get("path") in REMOTE_TARGETS:
            await self.fire_remote(run, skipped)
            return
        owner = Principal(sub=run.owner, scopes=frozenset({"tasks"}))
        queue = QueueName.DEFAULT.value
        if recovered and await was_queued(self.celery, self.records, run.owner, run.task_id, queue):
            log.info("schedule %s: task %s had been queued before", run.schedule_id, run.task_id)
            return
        try:
            prepared = prepare_target(
                run.target["path"], run.target["body"], self.settings, where="target.body"
            )
            await submit_prepared(
                celery_app=self.celery,
                records=self.records,
                redis=self.redis,
                user=owner,
                prepared=prepared,
                task_id=run.task_id,
            )
        except (AppError, KeyError) as exc:
            SCHEDULE_RUNS.labels("failed").inc()
            log.warning("schedule %s: run failed: %s", run.schedule_id, exc)
            return
        SCHEDULE_RUNS.labels("fired").inc()
        log.info("schedule %s ran task %s (%d missed ticks folded in)", run.schedule_id, run.task_id, skipped)

    async def fire_remote(self, run: Run, skipped: int) -> None:
        """Submit a claimed tick to the target's service as the owner (remote_targets.py).

        Idempotency-Key schedule:{id}:{due}: a call retried after a lost answer, or by the
        scheduler that took over this run, submits once.
        """
        schedule_id, target = run.schedule_id, run.target
        try:
            for attempt in range(REMOTE_ATTEMPTS):
                try:
                    task_id = await submit_remote(
                        target["path"], target["body"], run.owner, self.settings, run.idempotency_key
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
            return
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
