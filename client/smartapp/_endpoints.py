"""Each endpoint once, as a description of its request and how to read its answer.

`Client` and `AsyncClient` both send these, so the two never disagree on a path, a body or
a model: one place per endpoint, two transports (the shape of httpx's own sync/async split).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from smartapp._models import (
    BatchAccepted,
    BatchStatus,
    BulkReplayAccepted,
    CacheBatchResult,
    CacheEntry,
    CacheListing,
    CancelAccepted,
    Device,
    DeviceList,
    InboxPage,
    NotificationAccepted,
    NotificationCancelled,
    NotificationStatus,
    Preferences,
    ReadResult,
    ReplayAccepted,
    Schedule,
    ScheduleList,
    TaskAccepted,
    TaskList,
    TaskProgress,
    TaskRetry,
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
    extra_headers: dict[str, str] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        out = dict(self.extra_headers)
        if self.idempotency_key:
            out["Idempotency-Key"] = self.idempotency_key
        return out

    @property
    def safe_to_repeat(self) -> bool:
        # A conditional write repeated after a lost answer would meet its own first write and
        # fail 412: better the transport error, which says the outcome is unknown.
        if {"If-Match", "If-None-Match"} & set(self.extra_headers):
            return False
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


def iso(value: datetime | str) -> str:
    """A time for the API: an aware datetime as ISO 8601 (the platform refuses a naive one, 422)."""
    return value.isoformat() if isinstance(value, datetime) else value


@dataclass(frozen=True)
class SubmitOptions:
    """What every submission may carry besides its own fields (None: the server's default)."""

    retry: TaskRetry | dict[str, Any] | None = None
    queue_timeout_seconds: float | None = None
    run_timeout_seconds: float | None = None
    countdown: float | None = None  # not taken by scraping
    priority: int | None = None  # not taken by scraping
    callback_url: str | None = None  # not taken by scraping

    def body(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if v is not None}
        if isinstance(self.retry, TaskRetry):
            out["retry"] = self.retry.model_dump(exclude_none=True)
        return out


# --- tasks -------------------------------------------------------------------------------------


def submit_task(
    task_type: str, data: dict[str, Any] | None, options: SubmitOptions, idempotency_key: str | None
) -> Call[TaskAccepted]:
    body = {"task_type": task_type, "data": data or {}, **options.body()}
    return Call("POST", "/background-task/", _accepted, body, idempotency_key=_key(idempotency_key))


def submit_long_running(
    steps: int,
    step_seconds: float,
    data: dict[str, Any] | None,
    options: SubmitOptions,
    idempotency_key: str | None,
) -> Call[TaskAccepted]:
    body = {"steps": steps, "step_seconds": step_seconds, "data": data or {}, **options.body()}
    return Call("POST", "/long-running-task/", _accepted, body, idempotency_key=_key(idempotency_key))


def get_task(task_id: str) -> Call[TaskStatus]:
    return Call("GET", f"/task-status/{seg(task_id)}", _model(TaskStatus))


def get_progress(task_id: str) -> Call[TaskProgress]:
    return Call("GET", f"/task-progress/{seg(task_id)}", _model(TaskProgress))


def cancel(task_id: str) -> Call[CancelAccepted]:
    return Call("POST", f"/task-cancel/{seg(task_id)}", _model(CancelAccepted))


def _replay_accepted(r: httpx.Response) -> ReplayAccepted:
    accepted = ReplayAccepted.model_validate(r.json())
    accepted._request_id = r.headers.get("X-Request-ID")
    return accepted


def retry_task(task_id: str, openai_key: str | None = None) -> Call[ReplayAccepted]:
    body: dict[str, Any] = {"openai_key": openai_key} if openai_key else {}
    return Call("POST", f"/task-retry/{seg(task_id)}", _replay_accepted, body)


def retry_tasks(status: str, task_type: str | None, since: datetime | str | None) -> Call[BulkReplayAccepted]:
    body: dict[str, Any] = {"status": status}
    if task_type is not None:
        body["task_type"] = task_type
    if since is not None:
        body["since"] = iso(since)
    return Call("POST", "/tasks/retry", _model(BulkReplayAccepted), body)


def list_tasks(
    status: str | None,
    limit: int | None,
    task_type: str | None,
    since: datetime | str | None,
    until: datetime | str | None,
    cursor: str | None,
) -> Call[TaskList]:
    params: dict[str, Any] = {}
    for name, value in (("status", status), ("limit", limit), ("task_type", task_type), ("cursor", cursor)):
        if value is not None:
            params[name] = value
    if since is not None:
        params["since"] = iso(since)
    if until is not None:
        params["until"] = iso(until)
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
    include_selectors: list[str] | None = None,
    exclude_selectors: list[str] | None = None,
    headers: dict[str, str] | None = None,
    options: SubmitOptions | None = None,
) -> Call[TaskAccepted]:
    body: dict[str, Any] = {"url": url, **(options or SubmitOptions()).body()}
    for name, value in (
        ("openai_key", openai_key),
        ("model", model),
        ("prompt", prompt),
        ("schema", schema),
        ("max_age", max_age),
        ("include_selectors", include_selectors),
        ("exclude_selectors", exclude_selectors),
        ("headers", headers),
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
    send_at: str | datetime | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"user_id": user_id, "title": title, "message": message, "data": data or {}}
    if send_at is not None:  # an aware time: the platform refuses a naive one (422)
        body["send_at"] = iso(send_at)
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


def cancel_notification(notification_id: str) -> Call[NotificationCancelled]:
    return Call("POST", f"/notification-cancel/{seg(notification_id)}", _model(NotificationCancelled))


def get_preferences() -> Call[Preferences]:
    return Call("GET", "/notification-preferences", _model(Preferences))


def set_preferences(preferences: Preferences | dict[str, Any]) -> Call[Preferences]:
    body = (
        preferences.model_dump(mode="json", exclude_unset=False)
        if isinstance(preferences, Preferences)
        else preferences
    )
    return Call("PUT", "/notification-preferences", _model(Preferences), body)


# --- schedules ---------------------------------------------------------------------------------


def create_schedule(
    name: str,
    target_path: str,
    body: dict[str, Any] | None,
    *,
    cron: str | None,
    every_seconds: int | None,
    timezone: str | None,
    paused: bool,
) -> Call[Schedule]:
    payload: dict[str, Any] = {"name": name, "target": {"path": target_path, "body": body or {}}}
    if cron is not None:
        payload["cron"] = cron
    if every_seconds is not None:
        payload["every_seconds"] = every_seconds
    if timezone is not None:
        payload["timezone"] = timezone
    if paused:
        payload["paused"] = True
    return Call("POST", "/schedules/", _model(Schedule), payload)


def list_schedules() -> Call[ScheduleList]:
    return Call("GET", "/schedules/", _model(ScheduleList))


def get_schedule(schedule_id: str) -> Call[Schedule]:
    return Call("GET", f"/schedules/{seg(schedule_id)}", _model(Schedule))


def update_schedule(schedule_id: str, changes: dict[str, Any]) -> Call[Schedule]:
    return Call("PATCH", f"/schedules/{seg(schedule_id)}", _model(Schedule), changes)


def delete_schedule(schedule_id: str) -> Call[None]:
    return Call("DELETE", f"/schedules/{seg(schedule_id)}", _nothing)


# --- cache -------------------------------------------------------------------------------------


def _entry(r: httpx.Response) -> CacheEntry:
    entry = CacheEntry.model_validate(r.json())
    entry._etag = r.headers.get("ETag")
    return entry


def cache_get(key: str) -> Call[CacheEntry]:
    return Call("GET", f"/cache/{seg(key)}", _entry)


def cache_put(
    key: str, value: Any, ttl: int | None, if_match: str | None = None, if_none_match: str | None = None
) -> Call[CacheEntry]:
    body: dict[str, Any] = {"value": value}
    if ttl is not None:
        body["ttl"] = ttl
    headers: dict[str, str] = {}
    if if_match is not None:
        headers["If-Match"] = if_match
    if if_none_match is not None:
        headers["If-None-Match"] = if_none_match
    return Call("PUT", f"/cache/{seg(key)}", _entry, body, extra_headers=headers)


def cache_list(prefix: str, cursor: str | None, limit: int | None) -> Call[CacheListing]:
    params: dict[str, Any] = {"prefix": prefix} if prefix else {}
    if cursor is not None:
        params["cursor"] = cursor
    if limit is not None:
        params["limit"] = limit
    return Call("GET", "/cache/", _model(CacheListing), params=params)


def cache_batch(
    get: list[str] | None, set: dict[str, Any] | None, delete: list[str] | None, ttl: int | None
) -> Call[CacheBatchResult]:
    body: dict[str, Any] = {}
    if get:
        body["get"] = list(get)
    if set:
        each = {"ttl": ttl} if ttl is not None else {}
        body["set"] = {k: {"value": v, **each} for k, v in set.items()}
    if delete:
        body["delete"] = list(delete)
    return Call("POST", "/cache-batch/", _model(CacheBatchResult), body)


def cache_delete(key: str) -> Call[None]:
    return Call("DELETE", f"/cache/{seg(key)}", _nothing)
