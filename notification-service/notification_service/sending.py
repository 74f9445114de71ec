"""Accepting notifications: build the immutable record, refuse what could not be sent."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from notification_service import webpush
from notification_service.ledger import FINAL_STATES, Notification
from notification_service.payloads import topic, webpush_payload
from notification_service.schemas import NotificationIn


class TooLarge(ValueError):
    pass


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def build(
    item: NotificationIn,
    *,
    sender: str,
    default_ttl: int,
    now: float,
    batch_id: str | None = None,
    task_id: str | None = None,
) -> Notification:
    """The record to store; raises TooLarge when its Web Push body would not fit 4096 bytes."""
    nid = str(uuid.uuid4())
    created_at = iso(now)
    payload = webpush_payload(
        notification_id=nid,
        title=item.title,
        message=item.message,
        data=item.data,
        created_at=created_at,
    )
    try:
        webpush.check_payload_size(payload)
    except webpush.PayloadTooLarge as exc:
        raise TooLarge(str(exc)) from None
    return Notification(
        notification_id=nid,
        sender=sender,
        user_id=item.user_id,
        title=item.title,
        message=item.message,
        data=item.data,
        ttl=default_ttl if item.ttl is None else item.ttl,
        urgency=item.urgency,
        topic=topic(item.user_id, item.title, item.message, item.data),
        created_at=created_at,
        created_ts=now,
        batch_id=batch_id,
        task_id=task_id,
    )


def aggregate_status(planned: bool, deliveries: Sequence[dict[str, Any]]) -> str:
    """One word for a notification from its deliveries' states."""
    if not planned:
        return "queued"
    if not deliveries:
        return "inbox_only"
    states = [d["status"] for d in deliveries]
    if any(s not in FINAL_STATES for s in states):
        return "sending" if any(d["attempts"] for d in deliveries) else "queued"
    delivered = sum(1 for s in states if s == "delivered")
    if delivered == len(states):
        return "delivered"
    return "partially_delivered" if delivered else "failed"
