"""Each endpoint once, as a description of its request and how to read its answer.

`Client` and `AsyncClient` both send these, so the two never disagree on a path, a body or
a model: one place per endpoint, two transports (the shape of httpx's own sync/async split).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from smartapp._models import (
    BatchAccepted,
    BatchStatus,
    CacheEntry,
    CancelAccepted,
    Device,
    DeviceList,
    InboxPage,
    NotificationAccepted,
    NotificationStatus,
    ReadResult,
    TaskAccepted,
    TaskList,
    TaskProgress,
    TaskStatus,
    TaskType,
    VapidPublicKey,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    # Submissions carry one; it stays the same across the client's own retries, so a retry
    # after a lost answer returns the task the first attempt made instead of a second one.
    idempotency_key: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Idempotency-Key": self.idempotency_key} if self.idempotency_key else {}

    @property
    def safe_to_repeat(self) -> bool:
        return self.method in {"GET", "PUT", "DELETE"} or self.idempotency_key is not None


def seg(value: str) -> str:
    """One path segment: an id or a cache key can never climb to another endpoint (`../`)."""
    if not value:
        raise ValueError("an id or key must not be empty")
    return quote(value, safe="")


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    return lambda r: model.model_validate(r.json())


def _accepted(r: httpx.Response) -> TaskAccepted:
    accepted = TaskAccepted.model_validate(r.json())
    accepted._request_id = r.headers.get("X-Request-ID")
    return accepted


def _nothing(_: httpx.Response) -> None:
    return None


def _key(given: str | None) -> str:
    return given or str(uuid.uuid4())


def _options(countdown: float | None, priority: int | None, callback_url: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if countdown is not None:
        out["countdown"] = countdown
    if priority is not None:
        out["priority"] = priority
    if callback_url is not None:
        out["callback_url"] = callback_url
    return out


# --- tasks -------------------------------------------------------------------------------------


def submit_task(
    task_type: str,
    data: dict[str, Any] | None,
    *,
    countdown: float | None,
    priority: int | None,
    callback_url: str | None,
    idempotency_key: str | None,
) -> Call[TaskAccepted]:
    body = {"task_type": task_type, "data": data or {}, **_options(countdown, priority, callback_url)}
    return Call("POST", "/background-task/", _accepted, body, idempotency_key=_key(idempotency_key))


def submit_long_running(
    steps: int,
    step_seconds: float,
    data: dict[str, Any] | None,
    *,
    countdown: float | None,
    priority: int | None,
    callback_url: str | None,
    idempotency_key: str | None,
) -> Call[TaskAccepted]:
    body = {
        "steps": steps,
        "step_seconds": step_seconds,
        "data": data or {},
        **_options(countdown, priority, callback_url),
    }
    return Call("POST", "/long-running-task/", _accepted, body, idempotency_key=_key(idempotency_key))


def get_task(task_id: str) -> Call[TaskStatus]:
    return Call("GET", f"/task-status/{seg(task_id)}", _model(TaskStatus))


def get_progress(task_id: str) -> Call[TaskProgress]:
    return Call("GET", f"/task-progress/{seg(task_id)}", _model(TaskProgress))


def cancel(task_id: str) -> Call[CancelAccepted]:
    return Call("POST", f"/task-cancel/{seg(task_id)}", _model(CancelAccepted))


def list_tasks(status: str | None, limit: int) -> Call[TaskList]:
    params: dict[str, Any] = {"limit": limit}
    if status is not None:
        params["status"] = status
    return Call("GET", "/tasks/", _model(TaskList), params=params)


def task_types() -> Call[list[TaskType]]:
    return Call("GET", "/task-types/", lambda r: [TaskType.model_validate(t) for t in r.json()["task_types"]])


def events_path(task_id: str) -> str:
    return f"/task-events/{seg(task_id)}"


# --- scraping ----------------------------------------------------------------------------------


def scrape(
    url: str,
    *,
    openai_key: str | None,
    model: str | None,
    prompt: str | None,
    schema: dict[str, Any] | None,
    max_age: int | None,
    idempotency_key: str | None,
) -> Call[TaskAccepted]:
    body: dict[str, Any] = {"url": url}
    for name, value in (
        ("openai_key", openai_key),
        ("model", model),
        ("prompt", prompt),
        ("schema", schema),
        ("max_age", max_age),
    ):
        if value is not None:
            body[name] = value
    return Call("POST", "/background-scraping/", _accepted, body, idempotency_key=_key(idempotency_key))


# --- notifications -----------------------------------------------------------------------------


def register_device(
    channel: str, *, subscription: dict[str, Any] | None, url: str | None, name: str | None
) -> Call[Device]:
    body: dict[str, Any] = {"channel": channel}
    if subscription is not None:
        body["subscription"] = subscription
    if url is not None:
        body["url"] = url
    if name is not None:
        body["name"] = name
    return Call("POST", "/devices/", _model(Device), body)


def list_devices() -> Call[DeviceList]:
    return Call("GET", "/devices/", _model(DeviceList))


def delete_device(device_id: str) -> Call[None]:
    return Call("DELETE", f"/devices/{seg(device_id)}", _nothing)


def vapid_public_key() -> Call[str]:
    return Call(
        "GET", "/webpush/vapid-public-key", lambda r: VapidPublicKey.model_validate(r.json()).public_key
    )


def notification_body(
    user_id: str,
    title: str,
    message: str,
    data: dict[str, Any] | None,
    ttl: int | None,
    urgency: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"user_id": user_id, "title": title, "message": message, "data": data or {}}
    if ttl is not None:
        body["ttl"] = ttl
    if urgency is not None:
        body["urgency"] = urgency
    return body


def send_notification(body: dict[str, Any], idempotency_key: str | None) -> Call[NotificationAccepted]:
    return Call(
        "POST",
        "/send-notification/",
        _model(NotificationAccepted),
        body,
        idempotency_key=_key(idempotency_key),
    )


def batch_notifications(
    notifications: list[dict[str, Any]], idempotency_key: str | None
) -> Call[BatchAccepted]:
    return Call(
        "POST",
        "/batch-notifications/",
        _model(BatchAccepted),
        {"notifications": notifications},
        idempotency_key=_key(idempotency_key),
    )


def notification_status(notification_id: str) -> Call[NotificationStatus]:
    return Call("GET", f"/notification-status/{seg(notification_id)}", _model(NotificationStatus))


def batch_status(batch_id: str) -> Call[BatchStatus]:
    return Call("GET", f"/batch-status/{seg(batch_id)}", _model(BatchStatus))


def inbox(limit: int, before: int | None, unread: bool) -> Call[InboxPage]:
    params: dict[str, Any] = {"limit": limit}
    if before is not None:
        params["before"] = before
    if unread:
        params["unread"] = "true"
    return Call("GET", "/inbox/", _model(InboxPage), params=params)


def mark_read(notification_id: str) -> Call[ReadResult]:
    return Call("POST", f"/inbox/{seg(notification_id)}/read", _model(ReadResult))


def mark_all_read() -> Call[ReadResult]:
    return Call("POST", "/inbox/read-all", _model(ReadResult))


INBOX_STREAM_PATH = "/inbox/stream"


# --- cache -------------------------------------------------------------------------------------


def cache_get(key: str) -> Call[CacheEntry]:
    return Call("GET", f"/cache/{seg(key)}", _model(CacheEntry))


def cache_put(key: str, value: Any, ttl: int | None) -> Call[CacheEntry]:
    body: dict[str, Any] = {"value": value}
    if ttl is not None:
        body["ttl"] = ttl
    return Call("PUT", f"/cache/{seg(key)}", _model(CacheEntry), body)


def cache_delete(key: str) -> Call[None]:
    return Call("DELETE", f"/cache/{seg(key)}", _nothing)
