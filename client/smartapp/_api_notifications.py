"""The endpoints of notifications: devices, sending, delivery status, the inbox, preferences."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from smartapp._bind import endpoint
from smartapp._call import Call, key, model, nothing, present, seg
from smartapp._models import (
    BatchAccepted,
    BatchStatus,
    Device,
    DeviceList,
    InboxPage,
    NotificationAccepted,
    NotificationCancelled,
    NotificationStatus,
    Preferences,
    ReadResult,
    VapidPublicKey,
)

INBOX_STREAM_PATH = "/inbox/stream"


class NotificationsAPI:
    @endpoint
    def register_device(
        self,
        channel: str,
        *,
        subscription: dict[str, Any] | None = None,
        url: str | None = None,
        name: str | None = None,
    ) -> Call[Device]:
        """`POST /devices/`: a browser's Web Push `subscription`, or a webhook `url`."""
        body = {"channel": channel, **present(subscription=subscription, url=url, name=name)}
        return Call("POST", "/devices/", model(Device), body)

    @endpoint
    def list_devices(self) -> Call[list[Device]]:
        return Call("GET", "/devices/", model(DeviceList)).then(lambda page: page.devices)

    @endpoint
    def delete_device(self, device_id: str) -> Call[None]:
        return Call("DELETE", f"/devices/{seg(device_id)}", nothing)

    @endpoint
    def vapid_public_key(self) -> Call[str]:
        """The key a browser's `PushManager.subscribe` needs (`applicationServerKey`)."""
        return Call("GET", "/webpush/vapid-public-key", model(VapidPublicKey)).then(lambda k: k.public_key)

    @endpoint
    def send_notification(
        self,
        user_id: str,
        title: str,
        message: str = "",
        data: dict[str, Any] | None = None,
        *,
        ttl: int | None = None,
        urgency: str | None = None,
        send_at: str | datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Call[NotificationAccepted]:
        """`POST /send-notification/`; `send_at` (an aware time) holds it back until then."""
        body = {
            "user_id": user_id,
            "title": title,
            "message": message,
            "data": data or {},
            **present(send_at=send_at, ttl=ttl, urgency=urgency),
        }
        return Call(
            "POST",
            "/send-notification/",
            model(NotificationAccepted),
            body,
            idempotency_key=key(idempotency_key),
        )

    @endpoint
    def batch_notifications(
        self, notifications: list[dict[str, Any]], *, idempotency_key: str | None = None
    ) -> Call[BatchAccepted]:
        """`POST /batch-notifications/`: many notifications (each a `send_notification` body) at once."""
        return Call(
            "POST",
            "/batch-notifications/",
            model(BatchAccepted),
            {"notifications": notifications},
            idempotency_key=key(idempotency_key),
        )

    @endpoint
    def notification_status(self, notification_id: str) -> Call[NotificationStatus]:
        return Call("GET", f"/notification-status/{seg(notification_id)}", model(NotificationStatus))

    @endpoint
    def batch_status(self, batch_id: str) -> Call[BatchStatus]:
        return Call("GET", f"/batch-status/{seg(batch_id)}", model(BatchStatus))

    @endpoint
    def cancel_notification(self, notification_id: str) -> Call[NotificationCancelled]:
        """`POST /notification-cancel/{id}`: stop one not yet sent; `Conflict` when all went out."""
        return Call("POST", f"/notification-cancel/{seg(notification_id)}", model(NotificationCancelled))

    @endpoint
    def inbox(self, limit: int = 50, *, before: int | None = None, unread: bool = False) -> Call[InboxPage]:
        """`GET /inbox/`: your notifications, newest first; `next_before` pages back."""
        params = present(limit=limit, before=before, unread="true" if unread else None)
        return Call("GET", "/inbox/", model(InboxPage), params=params)

    @endpoint
    def mark_read(self, notification_id: str) -> Call[ReadResult]:
        return Call("POST", f"/inbox/{seg(notification_id)}/read", model(ReadResult))

    @endpoint
    def mark_all_read(self) -> Call[ReadResult]:
        return Call("POST", "/inbox/read-all", model(ReadResult))

    @endpoint
    def get_preferences(self) -> Call[Preferences]:
        return Call("GET", "/notification-preferences", model(Preferences))

    @endpoint
    def set_preferences(self, preferences: Preferences | dict[str, Any]) -> Call[Preferences]:
        """`PUT /notification-preferences`: channels on or off, quiet hours (None: none)."""
        body = (
            preferences.model_dump(mode="json", exclude_unset=False)
            if isinstance(preferences, Preferences)
            else preferences
        )
        return Call("PUT", "/notification-preferences", model(Preferences), body)
