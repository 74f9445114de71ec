"""task-service's HTTP API: generic and long-running tasks, status of every service's tasks.

The cache's routes are in cache_routes.py."""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime
from redis.exceptions import RedisError

from shared import (
    API_PREFIX,
    STATUSES,
    STREAM_RESPONSES,
    TASKS_REPLAYED,
    TERMINAL_STATUSES,
    CeleryDep,
    Conflict,
    EventsDep,
    IdempotencyKey,
    Principal,
    QueueName,
    RecordsDep,
    ServiceUnavailable,
    Signal,
    TaskState,
    TasksUser,
    TooManyRequests,
    Unprocessable,
    callback_secret,
    events_channel,
    merge_status,
    now_iso,
    replay_refusal,
    route,
    submit_task,
)
from task_service.kinds import REGISTRY
from task_service.remote_targets import TargetRefused, replay_remote
from task_service.schemas import (
    BackgroundTaskIn,
    BulkReplayAccepted,
    BulkReplayIn,
    CancelAccepted,
    LongRunningTaskIn,
    ReplayAccepted,
    ReplayIn,
    TaskAccepted,
    TaskList,
    TaskProgress,
    TaskStatus,
    TaskTypeList,
)
from task_service.settings import TaskSettings
from task_service.targets import (
    Prepared,
    check_submission,
    prepare_background,
    prepare_long_running,
    submit_prepared,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix=API_PREFIX)
SSE_KEEPALIVE_SECONDS = 15.0


def _settings(request: Request) -> TaskSettings:
    settings: TaskSettings = request.app.state.settings
    return settings


@dataclass(frozen=True, slots=True)
class Submission:
    """Who submits, with which Idempotency-Key, to which app: a submitting route's one dependency."""

    request: Request
    user: Principal
    idempotency_key: str | None

    async def __call__(self, prepared: Prepared) -> dict[str, Any]:
        """Check the prepared task against the limits, then queue it (or answer the earlier one)."""
        check_submission(prepared, _settings(self.request))
        state = self.request.app.state
        return await submit_prepared(
            celery_app=state.celery,
            records=state.records,
            redis=state.redis,
            user=self.user,
            prepared=prepared,
            idempotency_key=self.idempotency_key,
        )


async def _submission(
    request: Request, user: TasksUser, idempotency_key: IdempotencyKey = None
) -> Submission:
    return Submission(request, user, idempotency_key)


Submit = Annotated[Submission, Depends(_submission)]


@route(router, "POST", "/background-task/", status_code=202, response_model=TaskAccepted)
async def background_task(body: BackgroundTaskIn, submit: Submit) -> dict[str, Any]:
    """Start a generic background task of a registered `task_type` (see GET /task-types/)."""
    return await submit(prepare_background(body))


@route(router, "GET", "/task-types/", response_model=TaskTypeList)
async def task_types(_: TasksUser) -> dict[str, Any]:
    """The task types `background-task` accepts: what each does and the JSON Schema of its `data`.

    Clients build their forms from it (the web console does), so a new type needs no client change.
    """
    return {
        "task_types": [
            {
                "name": k.name,
                "description": k.description,
                "input_schema": k.input_schema(),
                "default_max_attempts": k.default_max_attempts,
            }
            for k in sorted(REGISTRY.values(), key=lambda k: k.name)
        ]
    }


@route(router, "POST", "/long-running-task/", status_code=202, response_model=TaskAccepted)
async def long_running_task(body: LongRunningTaskIn, submit: Submit) -> dict[str, Any]:
    """Start a task of `steps` steps of `step_seconds` each; progress advances with every step."""
    return await submit(prepare_long_running(body))


@route(router, "GET", "/task-status/{task_id}", response_model=TaskStatus)
async def task_status(task_id: str, user: TasksUser, records: RecordsDep) -> dict[str, Any]:
    """Status of one of your tasks, from any service. Unknown ids and others' tasks are 404."""
    return await records.status(await records.get_for(user, task_id))


@route(router, "GET", "/task-progress/{task_id}", response_model=TaskProgress)
async def task_progress(task_id: str, user: TasksUser, records: RecordsDep) -> dict[str, Any]:
    """Progress of one of your tasks: current of total steps, percent and the last message."""
    return await records.progress(await records.get_for(user, task_id))


@route(router, "POST", "/task-cancel/{task_id}", status_code=202, response_model=CancelAccepted)
async def task_cancel(
    task_id: str, user: TasksUser, records: RecordsDep, celery: CeleryDep
) -> dict[str, Any]:
    """Cancel a task: a queued one never starts, a running one stops at its next step; it ends REVOKED."""
    record = await records.get_for(user, task_id)
    status = (await records.status(record))["status"]
    if status in TERMINAL_STATUSES:
        raise Conflict(f"The task has already finished ({status}).", code="task_finished")
    await records.request_cancel(task_id)
    if status in {TaskState.PENDING, TaskState.RETRY}:
        await records.mark(
            task_id,
            TaskState.REVOKED,
            finished_at=now_iso(),
            error={"type": "Revoked", "message": "Cancelled before it started."},
        )
        status = TaskState.REVOKED
    # Workers drop a revoked message on sight; our record's flag covers a worker that restarts.
    await anyio.to_thread.run_sync(lambda: celery.control.revoke(task_id))
    return {"task_id": task_id, "status": status, "cancel_requested": True}


MAX_BULK_REPLAY = 1000
# Replayed here: task-service's own queue. Scrapes are replayed by scraping-service (it owns its
# queue and seals the secrets a replay brings again); notifications are not replayed.
REPLAYED_REMOTELY = frozenset({QueueName.SCRAPING.value})


def _replay_refusal(
    record: dict[str, Any], status: str, openai_key: str | None, headers: bool = False
) -> Exception | None:
    """Why this task cannot be replayed now, or None."""
    refusal = replay_refusal(status, record.get("inputs"), has_key=bool(openai_key), has_headers=headers)
    if refusal is not None:
        return refusal
    queue = record.get("queue")
    if queue != QueueName.DEFAULT.value and queue not in REPLAYED_REMOTELY:
        return Conflict("Only tasks and scrapes can be replayed; submit it again.", code="replay_unsupported")
    return None


async def _replay(
    request: Request, user: Principal, record: dict[str, Any], secrets: dict[str, Any] | None = None
) -> dict[str, Any]:
    if record.get("queue") in REPLAYED_REMOTELY:
        return await replay_remote(_settings(request), user, record["task_id"], secrets or {})
    inputs: dict[str, Any] = record["inputs"]
    accepted = await submit_task(
        celery_app=request.app.state.celery,
        records=request.app.state.records,
        user=user,
        task_name=inputs["task_name"],
        task_type=record.get("task_type") or "",
        queue=QueueName.DEFAULT.value,
        kwargs=inputs["kwargs"],
        priority=inputs.get("priority"),
        callback_url=inputs.get("callback_url"),
        retry=inputs.get("retry"),
        queue_timeout=inputs.get("queue_timeout"),
        run_timeout=inputs.get("run_timeout"),
        extra_record={"retry_of": record["task_id"]},
    )
    return {**accepted, "retry_of": record["task_id"]}


@route(router, "POST", "/task-retry/{task_id}", status_code=202, response_model=ReplayAccepted)
async def task_retry(
    request: Request, task_id: str, user: TasksUser, records: RecordsDep, body: ReplayIn | None = None
) -> dict[str, Any]:
    """Run a failed, revoked or expired task of yours again, as a new task linked by `retry_of`.

    409 for a task that succeeded or has not finished; a scrape (which also needs the `scrape`
    scope) that used your own key needs `openai_key` again (else 422 `key_required`), one that
    sent request headers needs `headers` again (else 422 `headers_required`); one on the
    server's key spends your daily budget on it (429 `model_budget_exceeded`).
    """
    record = await records.get_for(user, task_id)
    status = (await records.status(record))["status"]
    key = body.openai_key.get_secret_value() if body and body.openai_key else None
    headers = {n: v.get_secret_value() for n, v in body.headers.items()} if body and body.headers else None
    refusal = _replay_refusal(record, status, key, bool(headers))
    if refusal is not None:
        raise refusal
    secrets: dict[str, Any] = {}
    if key is not None:
        secrets["openai_key"] = key
    if headers:
        secrets["headers"] = headers
    accepted = await _replay(request, user, record, secrets)
    TASKS_REPLAYED.labels("single").inc()
    return accepted


@route(router, "POST", "/tasks/retry", status_code=202, response_model=BulkReplayAccepted)
async def tasks_retry(
    request: Request, body: BulkReplayIn, user: TasksUser, records: RecordsDep
) -> dict[str, Any]:
    """Replay up to 1,000 of your tasks in `status` (FAILURE by default), newest first, optionally
    only of `task_type` and created `since`. Tasks that cannot be replayed (a scrape needing its
    key or headers, inputs no longer kept, a scrape refused by scraping-service or without the
    `scrape` scope) are skipped; new tasks beyond your queued-task limit are not started, nor
    scrapes beyond your daily budget on the server's key."""
    since = body.since.timestamp() if body.since else None
    started: list[str] = []
    scrapes_stopped = not user.has("scrape")
    # Only tasks created before now: the replays themselves join the same index as we go.
    async for _, record in records.scan_for(user.sub, since=since, until=time.time()):
        if len(started) >= MAX_BULK_REPLAY:
            break
        view = merge_status(record, None)
        if view["status"] != body.status or (body.task_type and record.get("task_type") != body.task_type):
            continue
        if _replay_refusal(record, view["status"], None) is not None:
            continue
        remote = record.get("queue") in REPLAYED_REMOTELY
        if remote and scrapes_stopped:
            continue
        try:
            accepted = await _replay(request, user, record)
        except TooManyRequests as exc:
            if remote and exc.code == "model_budget_exceeded":
                scrapes_stopped = True  # the server key's budget is spent: the other tasks go on
                continue
            break  # the caller's queue is full: what started is answered
        except TargetRefused:
            continue  # this scrape, as scraping-service judges it now (its URL no longer allowed...)
        except ServiceUnavailable:
            if not remote:
                raise
            scrapes_stopped = True  # scraping-service is away: the other tasks go on
            continue
        started.append(accepted["task_id"])
    TASKS_REPLAYED.labels("bulk").inc(len(started))
    return {"count": len(started), "task_ids": started}


MAX_LIST_SCAN = 5000  # records examined per page at most: a rare status does not scan a week


def _encode_cursor(score: float, task_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([score, task_id])).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        score, task_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(task_id, str) or isinstance(score, bool):
            raise ValueError
        return float(score), task_id
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise Unprocessable("cursor is not one this API gave out.", code="invalid_cursor") from None


@route(router, "GET", "/tasks/", response_model=TaskList)
async def list_tasks(
    user: TasksUser,
    records: RecordsDep,
    status: Annotated[
        str | None,
        Query(description="Only tasks in this status.", json_schema_extra={"enum": list(STATUSES)}),
    ] = None,
    task_type: Annotated[str | None, Query(max_length=64, description="Only tasks of this type.")] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="Created at or after (ISO 8601 with zone).")
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(description="Created at or before (ISO 8601 with zone).")
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=500, description="next_cursor of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Your tasks, newest first, a page at a time (follow `next_cursor`)."""
    if status is not None and status not in STATUSES:
        raise Unprocessable(f"status must be one of {', '.join(STATUSES)}.", code="invalid_status")
    before = _decode_cursor(cursor) if cursor else None
    tasks: list[dict[str, Any]] = []
    next_cursor = None
    examined = 0
    async for score, record in records.scan_for(
        user.sub,
        since=since.timestamp() if since else None,
        until=until.timestamp() if until else None,
        before=before,
    ):
        examined += 1
        view = merge_status(record, None)
        if (status is None or view["status"] == status) and (
            task_type is None or view["task_type"] == task_type
        ):
            tasks.append(view)
        if len(tasks) >= limit or examined >= MAX_LIST_SCAN:
            next_cursor = _encode_cursor(score, record["task_id"])
            break
    return {"tasks": tasks, "count": len(tasks), "next_cursor": next_cursor}


def _sse(event: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {orjson.dumps(data).decode()}\n\n".encode()


@route(router, "GET", "/task-events/{task_id}", response_class=StreamingResponse, responses=STREAM_RESPONSES)
async def task_events(
    task_id: str, user: TasksUser, records: RecordsDep, events: EventsDep
) -> StreamingResponse:
    """Server-sent events: progress as it happens, then the final status, then the stream ends."""
    record = await records.get_for(user, task_id)

    async def final_or_none() -> dict[str, Any] | None:
        status = await records.status(await records.get(task_id) or record)
        return status if status["status"] in TERMINAL_STATUSES else None

    async def stream() -> AsyncIterator[bytes]:
        # The process's one subscriber carries this stream (shared.EventHub): a stream holds
        # no Redis connection, only a short read now and then.
        try:
            async with events.listen(events_channel(task_id)) as listener:
                # Subscribed before the snapshot, so nothing falls between.
                yield _sse("progress", await records.progress(record))
                status = await records.status(record)
                if status["status"] in TERMINAL_STATUSES:
                    yield _sse("status", status)
                    return
                while True:
                    got = await listener.get(SSE_KEEPALIVE_SECONDS)
                    if isinstance(got, Signal):
                        # Quiet, or events may be lost: re-read (the final status may also have
                        # come only through Celery's result).
                        final = await final_or_none()
                        if final is not None:
                            yield _sse("status", final)
                            return
                        if got is Signal.RESYNC:
                            yield _sse("progress", await records.progress(record))
                        else:
                            yield b": keep-alive\n\n"
                        continue
                    event = orjson.loads(got)
                    if event.get("event") == "progress":
                        event.pop("event")
                        yield _sse("progress", {**event, "status": TaskState.PROGRESS})
                    elif event.get("status") in TERMINAL_STATUSES:
                        fresh = await records.get(task_id) or record
                        yield _sse("status", await records.status(fresh))
                        return
                    else:
                        shown = {"task_id": task_id, "status": event.get("status")}
                        if event.get("next_retry_at"):  # RETRY: when the next attempt is due
                            shown["next_retry_at"] = event["next_retry_at"]
                        yield _sse("status", shown)
        except (TimeoutError, RedisError, OSError) as exc:
            # Redis went away mid-stream: end it; the client reconnects and gets a 503 or a fresh start.
            log.warning("task-events %s ended early: %s", task_id, type(exc).__name__)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@route(router, "GET", "/callback-secret")
async def get_callback_secret(request: Request, user: TasksUser) -> dict[str, str]:
    """Your secret for verifying task callbacks (Standard Webhooks: webhook-id, -timestamp, -signature)."""
    return {"secret": callback_secret(_settings(request), user.sub), "scheme": "standard-webhooks-v1"}
