"""Accepting notifications: build the immutable record, refuse what could not be sent."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from notification_service import webpush
from notification_service.ledger_keys import CANCELLED, DEFERRED, DELIVERED, FINAL_STATES, SKIPPED, iso
from notification_service.notification import Notification
from notification_service.payloads import topic, webpush_payload_for
from notification_service.schemas import NotificationIn


class TooLarge(ValueError):
    pass


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
    notif = Notification(
        notification_id=nid,
        sender=sender,
        user_id=item.user_id,
        title=item.title,
        message=item.message,
        data=item.data,
        ttl=default_ttl if item.ttl is None else item.ttl,
        urgency=item.urgency,
        topic=topic(item.user_id, item.title, item.message, item.data),
        created_at=iso(now),
        created_ts=now,
        batch_id=batch_id,
        task_id=task_id,
        send_at=item.send_at.timestamp() if item.send_at is not None else None,
        priority=item.priority,
    )
    try:
        webpush.check_payload_size(webpush_payload_for(notif))
    except webpush.PayloadTooLarge as exc:
        raise TooLarge(str(exc)) from None
    return notif


def aggregate_status(
    planned: bool,
    deliveries: Sequence[dict[str, Any]],
    *,
    scheduled: bool = False,
    cancelled: bool = False,
) -> str:
    """One word for a notification from its deliveries' states."""
    if cancelled and not any(d["status"] == DELIVERED for d in deliveries):
        return "cancelled"
    if not planned:
        return "scheduled" if scheduled else "queued"
    if not deliveries:
        return "inbox_only"
    states = [d["status"] for d in deliveries]
    waiting = [d for d in deliveries if d["status"] not in FINAL_STATES]
    if waiting:
        if all(d["status"] == DEFERRED for d in waiting):
            return "deferred"
        return "sending" if any(d["attempts"] for d in deliveries) else "queued"
    counted = [s for s in states if s not in (SKIPPED, CANCELLED)]
    if not counted:
        return "cancelled" if CANCELLED in states else "skipped"
    delivered = sum(1 for s in counted if s == DELIVERED)
    if delivered == len(counted):
        return "delivered"
    return "partially_delivered" if delivered else "failed"
