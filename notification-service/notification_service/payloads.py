"""What a device receives: the one place that turns a notification into bytes.

The API checks sizes with these same functions, so what is accepted is what is sent.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from notification_service import webpush
from notification_service.notification import Notification

WEBHOOK_EVENT_TYPE = "notification.created"


def webpush_payload(
    *,
    notification_id: str,
    title: str,
    message: str,
    data: dict[str, Any],
    created_at: str,
) -> bytes:
    """The JSON a service worker's `push` event gets (`event.data.json()`)."""
    return orjson.dumps(
        {
            "notification_id": notification_id,
            "title": title,
            "message": message,
            "data": data,
            "created_at": created_at,
        }
    )


def webpush_payload_for(notif: Notification) -> bytes:
    return webpush_payload(
        notification_id=notif.notification_id,
        title=notif.title,
        message=notif.message,
        data=notif.data,
        created_at=notif.created_at,
    )


def webhook_body(notif: Notification) -> bytes:
    """Standard Webhooks payload shape: {type, timestamp, data}."""
    return orjson.dumps(
        {
            "type": WEBHOOK_EVENT_TYPE,
            "timestamp": notif.created_at,
            "data": {
                "notification_id": notif.notification_id,
                "user_id": notif.user_id,
                "sender": notif.sender,
                "title": notif.title,
                "message": notif.message,
                "data": notif.data,
                "batch_id": notif.batch_id,
            },
        }
    )


def topic(user_id: str, title: str, message: str, data: dict[str, Any]) -> str:
    """The same content to the same user is the same Topic: a repeat replaces the pending copy."""
    canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
    return webpush.topic_for(user_id, title, message, canonical)


def webhook_message_id(nid: str, dev: str) -> str:
    """Stable across retries, so a receiver can drop a repeat by `webhook-id`."""
    digest = hashlib.sha256(f"{nid}|{dev}".encode()).digest()
    return "msg_" + webpush.b64url_encode(digest[:18])
