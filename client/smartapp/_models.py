"""Typed views of the platform's answers, field for field the services' OpenAPI schemas.

`extra="allow"`: a server newer than this package may add fields; they are kept, not refused.
client/tests/test_client_models_match_openapi.py fails when these drift from the live schemas.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, PrivateAttr

TaskState = Literal["PENDING", "STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED", "EXPIRED"]
TERMINAL: frozenset[str] = frozenset({"SUCCESS", "FAILURE", "REVOKED", "EXPIRED"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- tasks -------------------------------------------------------------------------------------


class Links(_Model):
    status: str
    progress: str
    events: str
    cancel: str


class TaskAccepted(_Model):
    """The `202` answer of every submission (`background-task`, `long-running-task`, scraping)."""

    task_id: str
    status: TaskState
    task_type: str
    queue: str
    links: Links
    _request_id: str | None = PrivateAttr(default=None)

    @property
    def request_id(self) -> str | None:
        """The submission's `X-Request-ID`: the platform's logs of this task carry it."""
        return self._request_id


class TaskError(_Model):
    type: str
    message: str


class TaskStatus(_Model):
    task_id: str
    status: TaskState
    task_type: str | None
    queue: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    result: Any = None
    error: TaskError | None = None
    attempts: int = 0
    next_retry_at: str | None = None  # while RETRY: when the next attempt is due
    retry_of: str | None = None  # a replay: the task it ran again

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS"


class TaskProgress(_Model):
    task_id: str
    status: TaskState
    current: int
    total: int
    percent: float
    message: str | None
    updated_at: str | None


class TaskRetry(BaseModel):
    """A submission's `retry` option; a field left out takes the task type's default.

    Sent, not received: unknown fields are refused here rather than by the server (422).
    """

    model_config = ConfigDict(extra="forbid")
    max_attempts: int | None = None  # attempts in all, the first included (1-20)
    backoff: Literal["exponential", "fixed"] | None = None
    initial_seconds: float | None = None
    max_seconds: float | None = None
    jitter: bool | None = None


class TaskList(_Model):
    tasks: list[TaskStatus]
    count: int
    next_cursor: str | None = None


class ReplayAccepted(TaskAccepted):
    """`POST /task-retry/{id}`: the new task, linked to the one it replays."""

    retry_of: str


class BulkReplayAccepted(_Model):
    """`POST /tasks/retry`: how many of your tasks were started again, and their new ids."""

    count: int
    task_ids: list[str]


class CancelAccepted(_Model):
    task_id: str
    status: TaskState
    cancel_requested: bool


class TaskType(_Model):
    name: str
    description: str
    default_max_attempts: int = 1


class TaskEvent(_Model):
    """One event of `GET /task-events/{id}` (or of the polling that stands in for it).

    `kind` is `progress` (with `current`, `total`, `percent`, `message`) or `status`; the
    last event of a task carries its final status in `final`.
    """

    kind: Literal["progress", "status"]
    task_id: str
    status: TaskState
    current: int | None = None
    total: int | None = None
    percent: float | None = None
    message: str | None = None
    final: TaskStatus | None = None


# --- cache -------------------------------------------------------------------------------------


class CacheEntry(_Model):
    key: str
    value: Any
    ttl: int | None
    _etag: str | None = PrivateAttr(default=None)

    @property
    def etag(self) -> str | None:
        """The answer's `ETag` (quoted, as sent): pass it to `cache_put(..., if_match=...)`."""
        return self._etag


class CacheItem(_Model):
    key: str
    ttl: int
    size: int


class CacheListing(_Model):
    items: list[CacheItem]
    next_cursor: str | None


class CacheBatchResult(_Model):
    values: dict[str, Any]
    set: int
    deleted: int


# --- schedules ---------------------------------------------------------------------------------

TargetPath = Literal["background-task", "long-running-task", "background-scraping", "send-notification"]


class ScheduleTarget(_Model):
    path: TargetPath
    body: dict[str, Any] = {}


class Schedule(_Model):
    schedule_id: str
    name: str
    target: ScheduleTarget
    cron: str | None
    timezone: str
    every_seconds: int | None
    paused: bool
    next_run_at: str | None
    last_run_at: str | None
    last_task_id: str | None
    runs: int
    created_at: str
    updated_at: str


class ScheduleList(_Model):
    schedules: list[Schedule]
    count: int


# --- notifications -----------------------------------------------------------------------------

Channel = Literal["webpush", "webhook"]
DeliveryState = Literal[
    "queued", "sending", "delivered", "failed", "gone", "expired", "deferred", "skipped", "cancelled"
]
NotificationState = Literal[
    "scheduled",
    "queued",
    "sending",
    "deferred",
    "delivered",
    "partially_delivered",
    "failed",
    "skipped",
    "cancelled",
    "inbox_only",
]


class Device(_Model):
    device_id: str
    channel: Channel
    name: str | None = None
    created_at: str
    status: Literal["active", "disabled"]
    endpoint: str | None = None
    url: str | None = None
    disabled_reason: str | None = None
    secret: str | None = None


class DeviceList(_Model):
    devices: list[Device]
    count: int


class VapidPublicKey(_Model):
    public_key: str


class NotificationAccepted(_Model):
    notification_id: str
    task_id: str | None  # None while a send_at notification waits
    status: Literal["queued", "scheduled"]
    send_at: str | None = None


class BatchAccepted(_Model):
    batch_id: str
    task_id: str
    count: int
    notification_ids: list[str]


class DeliveryAttempt(_Model):
    n: int
    at: str
    http_status: int | None
    error: str | None
    latency_ms: float
    outcome: str


class Delivery(_Model):
    device_id: str
    channel: Channel
    status: DeliveryState
    attempts: int
    error: str | None
    http_status: int | None = None
    next_attempt_at: str | None = None
    updated_at: str | None = None
    history: list[DeliveryAttempt] = []


class NotificationStatus(_Model):
    notification_id: str
    status: NotificationState
    user_id: str
    created_at: str
    expires_at: str
    batch_id: str | None
    send_at: str | None = None
    priority: Literal["normal", "critical"] = "normal"
    deliveries: list[Delivery]


class BatchFailure(_Model):
    notification_id: str
    device_id: str
    channel: str
    status: DeliveryState
    error: str | None
    http_status: int | None = None


class BatchStatus(_Model):
    batch_id: str
    status: Literal["in_progress", "done"]
    count: int
    planned: int
    created_at: str
    counts: dict[str, int]
    failures: list[BatchFailure]


class InboxItem(_Model):
    notification_id: str
    seq: int
    title: str
    message: str
    data: dict[str, Any]
    sender: str
    created_at: str
    read: bool


class InboxPage(_Model):
    items: list[InboxItem]
    unread_count: int
    next_before: int | None


class ReadResult(_Model):
    notification_id: str | None = None
    read: bool
    unread_count: int


class NotificationCancelled(_Model):
    notification_id: str
    status: Literal["cancelled"]
    cancelled_deliveries: int


class ChannelPreferences(_Model):
    webpush: bool = True
    webhook: bool = True


class QuietHours(_Model):
    start: str
    end: str
    timezone: str


class Preferences(_Model):
    """`GET/PUT /notification-preferences`: channels on or off, and quiet hours (or None)."""

    channels: ChannelPreferences = ChannelPreferences()
    quiet_hours: QuietHours | None = None
