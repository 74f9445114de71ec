"""notification-service's request and answer bodies: what the OpenAPI document shows."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from notification_service.webpush import MAX_TTL_SECONDS, Urgency
from shared import HTTP_URL_PATTERN

HTTPS_URL_PATTERN = HTTP_URL_PATTERN.replace("https?", "https")

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
Priority = Literal["normal", "critical"]
MAX_SCHEDULE_DAYS = 30


class PushKeys(BaseModel):
    p256dh: str = Field(
        max_length=200,
        description="The browser's P-256 public key (an uncompressed point, 65 bytes), base64url.",
        json_schema_extra={"pattern": "^[A-Za-z0-9_-]{87}=?$"},
    )
    auth: str = Field(
        max_length=100,
        description="The 16-byte auth secret, base64url.",
        json_schema_extra={"pattern": "^[A-Za-z0-9_-]{22}(==)?$"},
    )


class PushSubscriptionIn(BaseModel):
    """What `PushSubscription.toJSON()` gives a web page (expirationTime is ignored)."""

    model_config = ConfigDict(extra="ignore")
    endpoint: str = Field(
        max_length=2048,
        description="The push service URL (https).",
        json_schema_extra={"pattern": HTTPS_URL_PATTERN},
    )
    keys: PushKeys


class DeviceIn(BaseModel):
    # A webpush device takes `subscription` and no `url`; a webhook device the reverse.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [
                {
                    "properties": {
                        "channel": {"const": "webpush"},
                        "subscription": {"type": "object"},
                        "url": {"type": "null"},
                    },
                    "required": ["channel", "subscription"],
                },
                {
                    "properties": {
                        "channel": {"const": "webhook"},
                        "url": {"type": "string"},
                        "subscription": {"type": "null"},
                    },
                    "required": ["channel", "url"],
                },
            ]
        },
    )
    channel: Literal["webpush", "webhook"]
    subscription: PushSubscriptionIn | None = Field(
        default=None, description="For channel webpush: the browser's push subscription."
    )
    url: str | None = Field(
        default=None,
        max_length=2048,
        description="For channel webhook: https URL receiving Standard Webhooks-signed POSTs "
        "(plain http only for hosts in OUTBOUND_ALLOWLIST).",
        json_schema_extra={"pattern": HTTPS_URL_PATTERN},
    )
    name: str | None = Field(default=None, max_length=100, description="A label for you.")

    @model_validator(mode="after")
    def _one_target(self) -> DeviceIn:
        if self.channel == "webpush" and (self.subscription is None or self.url is not None):
            raise ValueError("a webpush device takes `subscription` (and no `url`)")
        if self.channel == "webhook" and (self.url is None or self.subscription is not None):
            raise ValueError("a webhook device takes `url` (and no `subscription`)")
        return self


class DeviceOut(BaseModel):
    device_id: str
    channel: Literal["webpush", "webhook"]
    name: str | None = None
    created_at: str
    status: Literal["active", "disabled"]
    endpoint: str | None = Field(default=None, description="webpush: the push endpoint.")
    url: str | None = Field(default=None, description="webhook: where deliveries are POSTed.")
    disabled_reason: str | None = None
    secret: str | None = Field(
        default=None,
        description="webhook: the `whsec_` signing secret. Shown once, at registration.",
    )


class DeviceList(BaseModel):
    devices: list[DeviceOut]
    count: int


class VapidPublicKey(BaseModel):
    public_key: str = Field(description="The applicationServerKey: an uncompressed P-256 point, base64url.")


class NotificationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(min_length=1, max_length=256, description="The recipient.")
    title: str = Field(min_length=1, max_length=200)
    message: str = Field(default="", max_length=2000)
    data: dict[str, Any] = Field(
        default_factory=dict, description="A JSON object (at most 32 levels deep, integers within 64 bits)."
    )
    ttl: int | None = Field(
        default=None,
        ge=0,
        le=MAX_TTL_SECONDS,
        description="Seconds the notification stays worth delivering (Web Push TTL); "
        "retries stop when it has passed. Default one day.",
    )
    urgency: Urgency = Field(default="normal", description="Web Push Urgency.")
    send_at: AwareDatetime | None = Field(
        default=None,
        description=f"Send later: an ISO 8601 time with its offset, in the future and at most "
        f"{MAX_SCHEDULE_DAYS} days ahead. Until then the status is `scheduled` and it can be "
        "cancelled; it reaches the inbox when it is sent.",
    )
    priority: Priority = Field(
        default="normal", description="`critical` goes out during the recipient's quiet hours too."
    )


class NotificationAccepted(BaseModel):
    notification_id: str
    task_id: str | None = Field(description="The delivery task; null while scheduled.")
    status: Literal["queued", "scheduled"]
    send_at: str | None = None


class CancelResult(BaseModel):
    notification_id: str
    status: Literal["cancelled"]
    cancelled_deliveries: int = Field(
        description="Deliveries stopped; 0 when it was cancelled before any was planned."
    )


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    notifications: list[NotificationIn] = Field(min_length=1, max_length=10_000)


class BatchAccepted(BaseModel):
    batch_id: str
    task_id: str
    count: int
    notification_ids: list[str]


class Attempt(BaseModel):
    n: int
    at: str
    http_status: int | None
    error: str | None
    latency_ms: float
    outcome: str


class DeliveryOut(BaseModel):
    device_id: str
    channel: Literal["webpush", "webhook"]
    status: DeliveryState
    attempts: int
    error: str | None
    http_status: int | None = None
    next_attempt_at: str | None = Field(
        default=None, description="queued: the next retry; deferred: when quiet hours end."
    )
    updated_at: str | None = None
    history: list[Attempt] = Field(default_factory=list)


class NotificationStatus(BaseModel):
    notification_id: str
    status: NotificationState = Field(
        description="scheduled (waiting for send_at), queued (not yet planned), sending "
        "(deliveries in flight or waiting for a retry), deferred (waiting for the recipient's "
        "quiet hours to end), delivered (every device not skipped), partially_delivered, "
        "failed (no device), skipped (every channel switched off), cancelled, inbox_only "
        "(the recipient has no devices)."
    )
    user_id: str
    created_at: str
    expires_at: str
    batch_id: str | None
    send_at: str | None = None
    priority: Priority = "normal"
    deliveries: list[DeliveryOut]


class BatchFailure(BaseModel):
    notification_id: str
    device_id: str
    channel: str
    status: DeliveryState
    error: str | None
    http_status: int | None = None


class BatchStatus(BaseModel):
    batch_id: str
    status: Literal["in_progress", "done"]
    count: int
    planned: int = Field(description="Notifications whose deliveries have been created.")
    created_at: str
    counts: dict[str, int] = Field(description="Deliveries by state.")
    failures: list[BatchFailure] = Field(description="Failed, gone and expired deliveries.")


class InboxItem(BaseModel):
    notification_id: str
    seq: int = Field(description="Position in your inbox; the SSE event id.")
    title: str
    message: str
    data: dict[str, Any]
    sender: str
    created_at: str
    read: bool


class InboxPage(BaseModel):
    items: list[InboxItem]
    unread_count: int
    next_before: int | None = Field(description="Pass as `before` for the next (older) page.")


class ReadResult(BaseModel):
    notification_id: str | None = None
    read: bool
    unread_count: int
