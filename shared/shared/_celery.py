"""The Celery app factory and the task base every service's tasks inherit (the hooks a worker
installs around them are in _worker_hooks.py).

Each service builds its own app on its own queue; the settings below are chosen on purpose.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import orjson
import redis
from celery import Celery, Task
from celery.exceptions import Ignore, Reject, Retry
from celery.utils.saferepr import saferepr
from kombu import Exchange, Queue

from shared._context import request_id_var, task_id_var
from shared._fairq import FairQueue
from shared._fairq_worker import Settler
from shared._metrics import (
    TASK_DURATION,
    TASK_QUEUE_WAIT,
    TASKS_EXPIRED,
    TASKS_FAILED,
    TASKS_RETRIED,
    TASKS_REVOKED,
    TASKS_STARTED,
    TASKS_SUCCEEDED,
    TASKS_TIMED_OUT,
)
from shared._queues import MAX_PRIORITY, QueueName
from shared._records import RecordCalls, iso_at, now_iso
from shared._redis import Call, Caller, create_sync_redis
from shared._retries import is_retryable, retry_delay
from shared._settings import BaseServiceSettings
from shared._status import TERMINAL_STATUSES, TaskState
from shared._task_errors import (
    QUEUE_TIMEOUT_ERROR,
    RUN_TIMEOUTS,
    Continuation,
    TaskCancelled,
    error_view,
)

log = logging.getLogger("shared.celery")
T = TypeVar("T")

DEFAULT_PRIORITY = 5
REDACTED = "***"
# Arguments as shown in logs, events and Flower: bounded, like Celery's own default.
KWARGSREPR_MAX = 1024


# Ids of tasks this process put back to wait for a retry: their end frees only the window's place.
_RETRYING: set[str] = set()
# Ids of tasks whose end this process wrote with their final record (PlatformTask._end).
_ENDED: set[str] = set()


def redacted_repr(kwargs: dict[str, Any], secret: frozenset[str]) -> str:
    """kwargs for display: secret ones masked, the whole bounded (data may be a megabyte).

    As JSON (what the message carries anyway), cut at KWARGSREPR_MAX: for data of 200 small
    rows orjson takes 4 us where Celery's saferepr took 188 us (13 us against 0.1 us for
    `{"i": 1}`), on every submission. saferepr stays for what JSON cannot show.
    """
    shown = {k: (REDACTED if k in secret else v) for k, v in kwargs.items()}
    try:
        text = orjson.dumps(shown).decode()
    except TypeError:  # not JSON (an integer past 64 bits, say): Celery's own bounded repr
        return str(saferepr(shown, KWARGSREPR_MAX))
    return text if len(text) <= KWARGSREPR_MAX else text[: KWARGSREPR_MAX - 3] + "..."


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class PlatformTask(Task):  # type: ignore[misc]
    """Keeps the shared task record and the metrics in step with what the worker does."""

    abstract = True
    # kwargs never shown in logs, events or Flower (the broker message is the caller's job:
    # put only references to secrets there).
    secret_kwargs: ClassVar[frozenset[str]] = frozenset()

    @property
    def records(self) -> RecordCalls:
        return self.app.records  # type: ignore[no-any-return]

    def call(self, call: Call[T]) -> T:
        """Make a Redis call (self.records' calls) on this process's client."""
        return self.app.call(call)  # type: ignore[no-any-return]

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:  # type: ignore[override]
        if kwargs:
            options.setdefault("kwargsrepr", redacted_repr(kwargs, self.secret_kwargs))
        if args:
            options.setdefault("argsrepr", "(...)")
        return super().apply_async(args, kwargs, **options)

    def _queue(self) -> str:
        info = self.request.delivery_info or {}
        return str(info.get("routing_key") or self.app.conf.task_default_queue)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        req = self.request
        if req.called_directly:
            return self.run(*args, **kwargs)
        tid: str = req.id
        queue = self._queue()
        token = task_id_var.set(tid)
        rid_token = request_id_var.set(None)
        try:
            record = self.call(self.records.begin(tid, req.hostname or "")) or {}
            req.platform_record = record  # the final-status hook reads callback_url from here
            request_id_var.set(record.get("request_id") or None)  # the submitting request, in every log line
            if record.get("cancel") == "1":
                self._revoked(tid, queue, "Cancelled before it started.")
            if record.get("status") in TERMINAL_STATUSES:
                # A copy delivered again after the task finished (a worker lost before its ack).
                log.info("task %s already %s; not run again", self.name, record["status"])
                raise Ignore()
            expires_at = float(record.get("expires_at") or 0)
            if expires_at and record.get("status") == TaskState.PENDING and time.time() > expires_at:
                self._expired(tid, queue)
            enqueued = _parse_time(req.eta) or _parse_time(record.get("created_at"))
            if enqueued is not None:
                TASK_QUEUE_WAIT.labels(self.name, queue).observe(max(0.0, time.time() - enqueued))
            TASKS_STARTED.labels(self.name, queue).inc()
            attempt = int(record.get("attempts", 0)) + 1
            log.debug("task %s started (attempt %s)", self.name, attempt)
            start = time.perf_counter()
            try:
                result = self.run(*args, **kwargs)
                # One line per run (Celery's own success line is off: configure_worker_logging).
                elapsed_ms = (time.perf_counter() - start) * 1000
                log.info("task %s returned in %.1f ms (attempt %s)", self.name, elapsed_ms, attempt)
                return result
            except TaskCancelled:
                self._revoked(tid, queue, "Cancelled by its owner while running.")
            except (Retry, Ignore, Reject):
                raise
            except Exception as exc:
                if self._retry_later(tid, queue, record, exc):
                    raise Ignore() from None
                raise
            finally:
                TASK_DURATION.labels(self.name, queue).observe(time.perf_counter() - start)
        finally:
            request_id_var.reset(rid_token)
            task_id_var.reset(token)

    def _retry_later(self, tid: str, queue: str, record: dict[str, Any], exc: Exception) -> bool:
        """Per the submission's retry policy: wait in the fair queue's delayed set, status RETRY."""
        policy = record.get("retry")
        if not isinstance(policy, dict) or not is_retryable(exc):
            return False
        attempt = int(record.get("attempts") or 0) + 1  # the record is as it was before this attempt
        if attempt >= int(policy.get("max_attempts", 1)) or self.call(self.records.is_cancelled(tid)):
            return False
        # A Retry-After the error carries (a busy host, a rate-limited model) is waited at least.
        hint = getattr(exc, "retry_after", None)
        wait = max(retry_delay(policy, attempt), min(float(hint), 900.0) if hint else 0.0)
        due = time.time() + wait
        # The record first: once back in the queue the next attempt may start at any moment.
        self.call(self.records.mark(tid, TaskState.RETRY, next_retry_at=iso_at(due), error=error_view(exc)))
        app: Any = self.app
        if not app.fairq.retry_later(tid, due):
            return False
        _RETRYING.add(tid)
        TASKS_RETRIED.labels(self.name, queue).inc()
        log.info(
            "task %s failed (attempt %s, %s); retry in %.1fs",
            self.name,
            attempt,
            type(exc).__name__,
            due - time.time(),
        )
        return True

    def _end(self, task_id: str, status: TaskState, **fields: Any) -> int:
        """The final record and the fair queue's end of the task: one round trip.

        The messages popped then are published by the settler's thread; the task's postrun has
        nothing left to record. The answer is the record update's (0: it was final already).
        """
        app: Any = self.app
        fields = {"finished_at": now_iso(), **fields}
        updated, popped = app.fairq.end(task_id, app.records.end_args(task_id, status, fields))
        if self.request.id == task_id:  # else the main process (a hard time limit): no postrun
            _ENDED.add(task_id)
        app.settler.publish(popped)
        return int(updated)

    def _expired(self, tid: str, queue: str) -> None:
        # Picked up after its queue_timeout: never run. begin() counted an attempt; none was made.
        self._end(tid, TaskState.EXPIRED, started_at="", attempts=0, error=QUEUE_TIMEOUT_ERROR)
        TASKS_EXPIRED.labels(self.name, queue, "worker").inc()
        log.info("task expired before it started", extra={"task_id": tid})
        self._after_final(tid)
        raise Ignore()

    def _revoked(self, tid: str, queue: str, message: str) -> None:
        self._end(tid, TaskState.REVOKED, error={"type": "Revoked", "message": message})
        TASKS_REVOKED.labels(self.name, queue).inc()
        log.info("task revoked", extra={"task_id": tid})
        self._after_final(tid)
        raise Ignore()

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        self._end(task_id, TaskState.SUCCESS, result=retval)
        TASKS_SUCCEEDED.labels(self.name, self._queue()).inc()
        self._after_final(task_id)

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        error = error_view(exc)
        if isinstance(exc, RUN_TIMEOUTS):
            TASKS_TIMED_OUT.labels(self.name, self._queue()).inc()
        self._end(task_id, TaskState.FAILURE, error=error)
        TASKS_FAILED.labels(self.name, self._queue()).inc()
        self._after_final(task_id)

    def on_retry(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if isinstance(exc, Continuation):
            return
        error = {"type": type(exc).__name__, "message": str(exc)[:300]}
        self.call(self.records.mark(task_id, TaskState.RETRY, error=error))
        TASKS_RETRIED.labels(self.name, self._queue()).inc()

    def _after_final(self, task_id: str) -> None:
        from shared._callbacks import enqueue_callback

        try:
            enqueue_callback(self, task_id)
        except Exception:
            log.exception("could not enqueue the task's callback", extra={"task_id": task_id})


def report_progress(
    task: Task, current: int, total: int, message: str | None = None, *, seq: int | None = None
) -> None:
    """Record progress of the running task; raises TaskCancelled if its owner cancelled it."""
    tid = task.request.id
    if tid is None:  # called directly, outside a worker
        return
    app: PlatformCelery = task.app
    # One round trip: the cancel request is read by the same script that writes the progress.
    if app.call(app.records.report(tid, current, total, message, seq if seq is not None else current)) == -1:
        raise TaskCancelled()


class PlatformCelery(Celery):  # type: ignore[misc]
    """A Celery app that knows the shared settings and owns one Redis client per process."""

    settings: BaseServiceSettings
    records: RecordCalls  # the task records' calls, made with `call`
    _redis_pid: int | None = None
    _redis: redis.Redis | None = None
    _caller: Caller | None = None
    _fairq_pid: int | None = None
    _fairq_store: FairQueue | None = None
    _settler_pid: int | None = None
    _settler: Settler | None = None

    @property
    def redis(self) -> redis.Redis:
        # Made lazily and per process: a prefork child must not share its parent's sockets.
        if self._redis is None or self._redis_pid != os.getpid():
            self._redis = create_sync_redis(self.settings)
            self._caller = Caller(self._redis)
            self._redis_pid = os.getpid()
        return self._redis

    @property
    def caller(self) -> Caller:
        """Makes this process's calls, each thread on a connection of its own (shared._redis)."""
        client = self.redis
        assert self._caller is not None and self._caller.client is client
        return self._caller

    def call(self, call: Call[T]) -> T:
        """Make a Redis call (the records' calls) on this process's client."""
        return self.caller(call)

    @property
    def fairq(self) -> FairQueue:
        """This queue's fair queue (the workers' side), per process like the Redis client."""
        if self._fairq_store is None or self._fairq_pid != os.getpid():
            self._fairq_store = FairQueue(
                self.redis, self.settings, self.conf.task_default_queue, self.caller
            )
            self._fairq_pid = os.getpid()
        return self._fairq_store

    @property
    def settler(self) -> Settler:
        if self._settler is None or self._settler_pid != os.getpid():
            self._settler = Settler(self, self.fairq)
            self._settler_pid = os.getpid()
        return self._settler

    def on_expired(self, task_ids: list[str]) -> None:
        """The pass took these out of the fair queue past their queue_timeout: record EXPIRED."""
        from shared._callbacks import enqueue_callback_of

        queue = self.conf.task_default_queue
        for tid in task_ids:
            expired = self.records.mark(
                tid, TaskState.EXPIRED, finished_at=now_iso(), error=QUEUE_TIMEOUT_ERROR
            )
            if self.call(expired) != 1:
                continue
            record = self.call(self.records.get(tid)) or {}
            TASKS_EXPIRED.labels(
                record.get("task_name") or record.get("task_type") or "", queue, "pass"
            ).inc()
            try:
                enqueue_callback_of(self, tid, record)
            except Exception:
                log.exception("could not enqueue the task's callback", extra={"task_id": tid})

    def close_settler(self) -> None:
        """Record the ends still queued in this process before it exits."""
        if self._settler is not None and self._settler_pid == os.getpid():
            self._settler.close()
            self._settler = None


def make_queue(queue: QueueName) -> Queue:
    return Queue(
        queue.value,
        Exchange(queue.value, type="direct", durable=True),
        routing_key=queue.value,
        durable=True,
        queue_arguments={"x-max-priority": MAX_PRIORITY},
    )


def make_celery(
    service: str, queue: QueueName, settings: BaseServiceSettings, *, include: list[str] | None = None
) -> PlatformCelery:
    app = PlatformCelery(
        service,
        broker=settings.broker_url,
        backend=settings.redis_url,
        include=include,
        task_cls=PlatformTask,
    )
    app.settings = settings
    app.records = RecordCalls(settings.result_expires_seconds, settings.failed_retention_days * 86400)
    app.conf.update(
        task_queues=[make_queue(queue)],
        task_default_queue=queue.value,
        task_default_exchange=queue.value,
        task_default_routing_key=queue.value,
        task_create_missing_queues=False,
        # Reliability: ack after the task ran, so a worker killed mid-task leaves the message
        # on the broker to be delivered again; tasks are written to be safe to run twice.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Long tasks: take one message at a time so none waits behind a busy process.
        worker_prefetch_multiplier=settings.worker_prefetch_multiplier,
        # A lost broker connection means unacked messages go back to the queue; stop running
        # them here too, or they would run twice.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # Our task record is the result store: it tracks STARTED (with the attempt and the
        # worker), and a task's end writes the record and the fair queue's end in one round trip
        # (_end). No Celery result is written for a success: nothing reads it (the status, the
        # events and the callbacks read the record), and Celery's own writes would add four
        # round trips per task. Failures Celery still stores itself, including those only the
        # worker's main process sees (time limits, a lost child): merge_status reads them.
        task_track_started=False,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=True,
        result_expires=settings.result_expires_seconds,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2.0,
        broker_pool_limit=64,
        broker_heartbeat=30,
        # Persistent messages on durable queues, confirmed by the broker before apply_async returns.
        task_default_delivery_mode="persistent",
        broker_transport_options={"confirm_publish": True},
        # A publish while RabbitMQ is down gives up in seconds, so the API can answer 503.
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 1,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 1.0,
        },
        task_queue_max_priority=MAX_PRIORITY,
        task_default_priority=DEFAULT_PRIORITY,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # Time limits stay below RabbitMQ's consumer_timeout (30 min), or the broker would close
        # the channel and redeliver a task that is still running.
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        redis_socket_connect_timeout=2,
        redis_socket_timeout=5,
        redis_backend_health_check_interval=15,
        worker_send_task_events=os.environ.get("CELERY_SEND_EVENTS", "").lower() in {"1", "true"},
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    from shared._callbacks import register_callback_task

    register_callback_task(app, queue.value)
    return app
