"""What a submission to task-service's own endpoints is, apart from HTTP.

`background-task` and `long-running-task` validate and submit through these functions, and so
does a schedule (schedules.py): a schedule's target is checked exactly as the endpoint checks
it, and the tasks it starts take the same submission path (shared.submit_task).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from celery import Celery
from pydantic import BaseModel, ValidationError

from shared import (
    Allowlist,
    Idempotency,
    OutboundRefused,
    PayloadTooLarge,
    Principal,
    QueueName,
    TaskRecords,
    Unprocessable,
    check_timeouts,
    check_url,
    resolve_policy,
    submit_task,
)
from task_service.kinds import REGISTRY, known_kinds
from task_service.schemas import BackgroundTaskIn, LongRunningTaskIn, SubmitOptions
from task_service.settings import TaskSettings


@dataclass(frozen=True, slots=True)
class Prepared:
    """A checked submission: the Celery task to run, with what."""

    body: SubmitOptions
    task_name: str
    task_type: str
    kwargs: dict[str, Any]
    default_max_attempts: int = 1  # the task type's, when the body sets no retry policy


def check_task_type(body: BackgroundTaskIn) -> None:
    """A registered task_type whose `data` fits its model, else 422 (what background-task answers)."""
    kind = REGISTRY.get(body.task_type)
    if kind is None:
        raise Unprocessable(
            f"Unknown task_type {body.task_type!r}. Known task types: {', '.join(known_kinds())}.",
            code="unknown_task_type",
            detail={"known_task_types": known_kinds()},
        )
    try:
        kind.parse(body.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in ("data", *first["loc"]))
        raise Unprocessable(
            f"{where}: {first['msg']}", detail=[{"loc": where, "msg": first["msg"]}]
        ) from None


def check_options(opts: SubmitOptions, settings: TaskSettings) -> None:
    if opts.countdown is not None and opts.countdown > settings.max_countdown_seconds:
        raise Unprocessable(
            f"countdown may be at most {settings.max_countdown_seconds} seconds.", code="countdown_too_long"
        )
    check_timeouts(
        settings,
        queue_timeout_seconds=opts.queue_timeout_seconds,
        run_timeout_seconds=opts.run_timeout_seconds,
    )
    if opts.callback_url is not None:
        try:
            check_url(str(opts.callback_url), Allowlist.parse(settings.outbound_allowlist))
        except OutboundRefused as exc:
            raise Unprocessable(
                f"callback_url is not allowed: {exc.reason}.", code="url_not_allowed"
            ) from None


def prepare_background(body: BackgroundTaskIn) -> Prepared:
    check_task_type(body)
    kwargs = {"task_type": body.task_type, "data": body.data}
    return Prepared(
        body, "tasks.run_background", body.task_type, kwargs, REGISTRY[body.task_type].default_max_attempts
    )


def prepare_long_running(body: LongRunningTaskIn) -> Prepared:
    kwargs = {"steps": body.steps, "step_seconds": body.step_seconds, "data": body.data}
    return Prepared(body, "tasks.long_running", "long_running", kwargs)


def _parse(model: type[BaseModel], body: dict[str, Any], where: str) -> Any:
    """Validate like FastAPI validates a request body: the same model, a 422 naming the field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        detail = [
            {"loc": [where, *e.get("loc", ())], "msg": str(e.get("msg", "")), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = detail[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise Unprocessable(f"{loc}: {first['msg']}", detail=detail) from None


# Path segment -> how its body is parsed and prepared.
TARGETS: dict[str, tuple[type[BaseModel], Callable[[Any], Prepared]]] = {
    "background-task": (BackgroundTaskIn, prepare_background),
    "long-running-task": (LongRunningTaskIn, prepare_long_running),
}


def prepare_target(path: str, body: dict[str, Any], settings: TaskSettings, where: str = "body") -> Prepared:
    """Check `body` exactly as the endpoint at `path` would, and prepare its submission."""
    model, prepare = TARGETS[path]
    prepared = prepare(_parse(model, body, where))
    check_submission(prepared, settings)
    return prepared


def check_submission(prepared: Prepared, settings: TaskSettings) -> None:
    check_options(prepared.body, settings)
    if len(orjson.dumps(prepared.kwargs.get("data", {}))) > settings.max_data_bytes:
        raise PayloadTooLarge(f"data may be at most {settings.max_data_bytes} bytes of JSON.")


async def submit_prepared(
    *,
    celery_app: Celery,
    records: TaskRecords,
    redis: aioredis.Redis,
    user: Principal,
    prepared: Prepared,
    idempotency_key: str | None = None,
    task_id: str | None = None,
) -> dict[str, Any]:
    """Submit a checked submission to the default queue (shared.submit_task: record, then publish)."""
    body = prepared.body
    return await submit_task(
        celery_app=celery_app,
        records=records,
        user=user,
        task_name=prepared.task_name,
        task_type=prepared.task_type,
        queue=QueueName.DEFAULT.value,
        kwargs=prepared.kwargs,
        countdown=body.countdown,
        priority=body.priority,
        callback_url=str(body.callback_url) if body.callback_url else None,
        idempotency=Idempotency(redis, "tasks"),
        idempotency_key=idempotency_key,
        fingerprint_body=[prepared.task_name, body.model_dump(mode="json")],
        task_id=task_id,
        retry=resolve_policy(body.retry, prepared.default_max_attempts),
        queue_timeout=body.queue_timeout_seconds,
        run_timeout=body.run_timeout_seconds,
    )
