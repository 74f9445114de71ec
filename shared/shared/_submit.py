"""Submitting work: the record and its fair-queue entry in one step, then publishing off the event loop."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import kombu.exceptions
import orjson
import redis.asyncio as aioredis
from celery import Celery
from redis.exceptions import WatchError

from shared._auth import Principal
from shared._celery import DEFAULT_PRIORITY, redacted_repr
from shared._context import request_id_var
from shared._errors import Conflict, ServiceUnavailable, TooManyRequests, Unprocessable
from shared._fairq import TOO_MANY_RETRY_AFTER, AsyncFairQueue, build_message, message_id
from shared._metrics import TASKS_SUBMITTED
from shared._publisher import CONNECTION_ERRORS, publish_in_thread
from shared._records import TaskRecords, now_iso
from shared._settings import BaseServiceSettings
from shared._status import TaskState

log = logging.getLogger("shared.submit")

API_PREFIX = "/smart_application/tasks"
IDEMPOTENCY_TTL = 24 * 3600
# A submission records its work milliseconds after claiming its key, and a failed one frees the
# key; only a process killed in between leaves a claim with nothing behind it. Well above any
# submission's time (a stalled Redis or broker fails it within seconds).
STALE_CLAIM_SECONDS = 30.0
HARD_LIMIT_GRACE = 5.0  # seconds between a run_timeout's soft stop and the kill
MAX_IDEMPOTENCY_KEY = 200


def check_timeouts(
    settings: BaseServiceSettings, *, queue_timeout_seconds: float | None, run_timeout_seconds: float | None
) -> None:
    """422 `timeout_too_long` for a queue or run timeout past the workers' soft time limit, which
    is kept below RabbitMQ's consumer timeout."""
    cap = settings.task_soft_time_limit
    for name, value in (
        ("queue_timeout_seconds", queue_timeout_seconds),
        ("run_timeout_seconds", run_timeout_seconds),
    ):
        if value is not None and value > cap:
            raise Unprocessable(f"{name} may be at most {cap} seconds.", code="timeout_too_long")


def accepted_view(task_id: str, task_type: str, queue: str) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "status": TaskState.PENDING,
        "task_type": task_type,
        "queue": queue,
        "links": {
            "status": f"{API_PREFIX}/task-status/{task_id}",
            "progress": f"{API_PREFIX}/task-progress/{task_id}",
            "events": f"{API_PREFIX}/task-events/{task_id}",
            "cancel": f"{API_PREFIX}/task-cancel/{task_id}",
        },
    }


def body_fingerprint(body: Any) -> str:
    """The SHA-256 of a JSON body with sorted keys: an Idempotency-Key replay must match it."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Idempotency:
    """Idempotency-Key: the same key and body give the same answer; another body is a 409."""

    def __init__(self, client: aioredis.Redis, scope: str) -> None:
        self.r = client
        self.scope = scope

    def _key(self, owner: str, key: str) -> str:
        return f"t:idem:{self.scope}:{quote(owner, safe='')}:{key}"

    @staticmethod
    def check_key(key: str) -> None:
        if not (0 < len(key) <= MAX_IDEMPOTENCY_KEY) or not key.isprintable():
            raise Unprocessable(
                f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable characters.",
                code="invalid_idempotency_key",
            )

    async def claim(
        self,
        owner: str,
        key: str,
        fingerprint: str,
        new_id: str,
        recorded: Callable[[str], Awaitable[bool]] | None = None,
    ) -> str | None:
        """Claim key for new_id; return the earlier id when this is a repeat.

        A claim is written before the work it names is recorded. `recorded(id)` says whether
        that work exists: a claim older than STALE_CLAIM_SECONDS whose work does not exist was
        left by a process that died in between (the client saw no answer and sent the request
        again, which is what the key is for). It is taken over (None: new_id is the answer),
        once, atomically, instead of answering with an id that will never exist.
        """
        self.check_key(key)
        rkey = self._key(owner, key)
        value = orjson.dumps({"fp": fingerprint, "id": new_id, "at": time.time()})
        for _ in range(3):  # expired or taken over between our reads: look again
            if await self.r.set(rkey, value, nx=True, ex=IDEMPOTENCY_TTL):
                return None
            raw = await self.r.get(rkey)
            if raw is None:
                continue
            earlier = orjson.loads(raw)
            if earlier["fp"] != fingerprint:
                raise Conflict(
                    "This Idempotency-Key was already used with a different request body.",
                    code="idempotency_conflict",
                )
            earlier_id = str(earlier["id"])
            fresh = time.time() - float(earlier.get("at", 0)) < STALE_CLAIM_SECONDS
            if recorded is None or fresh or await recorded(earlier_id):
                return earlier_id
            if await self._replace(rkey, raw, value):
                log.warning("Idempotency-Key claim of %s taken over: its work was never recorded", earlier_id)
                return None
        raise Conflict(
            "The first request with this Idempotency-Key is still being accepted.",
            code="idempotency_in_progress",
        )

    async def _replace(self, rkey: str, seen: bytes | str, value: bytes) -> bool:
        """Set rkey to value if it still holds `seen` (WATCH/MULTI: one taker wins)."""
        async with self.r.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(rkey)
                if await pipe.get(rkey) != seen:
                    return False
                pipe.multi()
                pipe.set(rkey, value, ex=IDEMPOTENCY_TTL)
                await pipe.execute()
            except WatchError:
                return False
        return True

    async def release(self, owner: str, key: str) -> None:
        await self.r.delete(self._key(owner, key))


async def _publish_popped(celery_app: Celery, messages: list[bytes]) -> list[str]:
    """Publish what a submission popped (from a thread: blocking I/O); the ids confirmed. Any
    the broker did not confirm stay claimed: a worker's pass publishes them again."""
    try:
        return await publish_in_thread(celery_app, messages)
    except (kombu.exceptions.OperationalError, *CONNECTION_ERRORS) as exc:
        log.warning("publish failed: %s", type(exc).__name__)
        raise ServiceUnavailable(
            "The message broker (RabbitMQ) is unavailable.", code="broker_unavailable"
        ) from None


def fair_queue(celery_app: Celery, client: aioredis.Redis, queue: str) -> AsyncFairQueue:
    """The fair queue of `queue` on this Redis client, made once per app, client and queue."""
    cache: dict[tuple[int, str], AsyncFairQueue] = celery_app.__dict__.setdefault("_fair_queues", {})
    fq = cache.get((id(client), queue))
    if fq is None:
        settings: BaseServiceSettings = celery_app.settings  # type: ignore[attr-defined]  # PlatformCelery
        fq = cache[(id(client), queue)] = AsyncFairQueue(client, settings, queue)
    return fq


async def was_queued(celery_app: Celery, records: TaskRecords, owner: str, task_id: str, queue: str) -> bool:
    """Whether a submit_task of this id reached its fair queue: it is there (or running), or done.

    For a submitter that died part-way through (task-service's scheduler): a task recorded but
    never queued would stay PENDING forever. The queue is read before the record: a task that
    finishes in between has its final status written before it leaves the queue.
    """
    if await fair_queue(celery_app, records.r, queue).is_open(owner, task_id):
        return True
    record = await records.get(task_id)
    return record is not None and record.get("status") != "PENDING"


async def submit_task(
    *,
    celery_app: Celery,
    records: TaskRecords,
    user: Principal,
    task_name: str,
    task_type: str,
    queue: str,
    kwargs: dict[str, Any],
    secret_kwargs: frozenset[str] = frozenset(),
    countdown: float | None = None,
    priority: int | None = None,
    callback_url: str | None = None,
    idempotency: Idempotency | None = None,
    idempotency_key: str | None = None,
    fingerprint_body: Any = None,
    task_id: str | None = None,
    retry: dict[str, Any] | None = None,
    queue_timeout: float | None = None,
    run_timeout: float | None = None,
    extra_record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the task record and queue the task (one script), publish what was popped; the 202 body.

    queue_timeout: not started within this many seconds of submission, it never runs (EXPIRED);
    run_timeout: a running attempt is stopped after this long (FAILURE, TimeLimitExceeded).
    """
    task_id = task_id or str(uuid.uuid4())
    deadline = time.time() + queue_timeout if queue_timeout else None
    if idempotency is not None and idempotency_key:
        earlier = await idempotency.claim(
            user.sub, idempotency_key, body_fingerprint(fingerprint_body), task_id, records.exists
        )
        if earlier is not None:
            record = await records.get(earlier)
            if record is not None:
                return accepted_view(earlier, record.get("task_type", task_type), record.get("queue", queue))
            return accepted_view(earlier, task_type, queue)
    record = records.create_args(
        {
            "task_id": task_id,
            "owner": user.sub,
            "task_type": task_type,
            "queue": queue,
            "created_at": now_iso(),
            "callback_url": callback_url,
            "request_id": request_id_var.get(),
            "retry": retry,
            "task_name": task_name,
            "expires_at": f"{deadline:.3f}" if deadline else None,
            "run_timeout": run_timeout,
            # What a replay needs; secrets never: their references are left out, and
            # `needs_key` / `needs_headers` say the owner must send the key / headers again.
            "inputs": {
                "task_name": task_name,
                "kwargs": {k: v for k, v in kwargs.items() if k not in secret_kwargs},
                "needs_key": bool(kwargs.get("key_ref")),
                "needs_headers": bool(kwargs.get("headers_ref")),
                "priority": priority,
                "callback_url": callback_url,
                "retry": retry,
                "queue_timeout": queue_timeout,
                "run_timeout": run_timeout,
            },
            **(extra_record or {}),
        }
    )
    fq = fair_queue(celery_app, records.r, queue)
    prio = DEFAULT_PRIORITY if priority is None else priority
    message = build_message(
        celery_app,
        name=task_name,
        task_id=task_id,
        queue=queue,
        kwargs=kwargs,
        priority=prio,
        kwargsrepr=redacted_repr(kwargs, secret_kwargs),
        request_id=request_id_var.get(),
        # Soft: the task gets TimeLimitExceeded and fails cleanly; hard, a little later, kills
        # a task that did not stop (Celery then records the failure itself).
        soft_time_limit=run_timeout,
        time_limit=run_timeout + HARD_LIMIT_GRACE if run_timeout else None,
    )

    async def release_key() -> None:
        if idempotency is not None and idempotency_key:
            await idempotency.release(user.sub, idempotency_key)

    async def enter() -> Any:
        return await fq.submit(
            task_id=task_id,
            owner=user.sub,
            record=record,
            priority=prio,
            message=message,
            countdown=countdown,
            deadline=deadline,
        )

    try:
        queued = await enter()
        if queued.status == "too_many" and await fq.prune_open(user.sub):
            queued = await enter()
    except BaseException:
        await fq.abort(task_id, user.sub, [])  # the script may have run: take it all back out
        await release_key()
        raise
    if queued.status == "too_many":  # nothing was written
        await release_key()
        raise TooManyRequests(
            f"You have {fq.limit} unfinished tasks, the most one user may have; submit more as they finish.",
            code="too_many_tasks",
            headers={"Retry-After": TOO_MANY_RETRY_AFTER},
        )
    if queued.status == "exists":  # this id was submitted before (its submitter repeated itself)
        return accepted_view(task_id, task_type, queue)
    if queued.publish:
        popped = [message_id(m) for m in queued.publish]
        try:
            confirmed = await _publish_popped(celery_app, queued.publish)
        except ServiceUnavailable:
            # Put back what was popped and take this task out: the broker is needed now.
            await fq.abort(task_id, user.sub, popped)
            await release_key()
            raise
        await fq.confirm(confirmed)
    TASKS_SUBMITTED.labels(task_name, queue).inc()
    return accepted_view(task_id, task_type, queue)
