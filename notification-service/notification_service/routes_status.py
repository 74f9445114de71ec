"""Following and steering what was sent: a notification's status per device, cancelling
what has not gone out, a batch's counts and failures, and the recipient's preferences."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from notification_service import state
from notification_service.ledger_keys import WAITING_STATES, iso
from notification_service.preferences import Preferences, PreferenceStore
from notification_service.schemas import BatchStatus, CancelResult, NotificationStatus
from notification_service.sending import aggregate_status
from shared import API_PREFIX, NOTIFICATIONS_SCHEDULED, Conflict, CurrentUser, NotFound, route

router = APIRouter(prefix=API_PREFIX, tags=["notifications"])


@route(router, "GET", "/notification-status/{notification_id}", response_model=NotificationStatus)
async def notification_status(request: Request, notification_id: str, user: CurrentUser) -> dict[str, Any]:
    """Where a notification stands on each device, with every attempt.

    Visible to its sender and its recipient; any other id is 404.
    """
    ledger = state.ledger(request)
    notif = await ledger.get_notification(notification_id)
    if notif is None or not (user.sub in (notif.sender, notif.user_id) or user.is_admin):
        raise NotFound("No such notification.", code="notification_not_found")
    planned, deliveries = await ledger.deliveries(notification_id)
    scheduled = notif.send_at is not None and await ledger.is_scheduled(notification_id)
    status = aggregate_status(
        planned, deliveries, scheduled=scheduled, cancelled=await ledger.is_cancelled(notification_id)
    )
    return {
        "notification_id": notification_id,
        "status": status,
        "user_id": notif.user_id,
        "created_at": notif.created_at,
        "expires_at": iso(notif.expires_ts),
        "batch_id": notif.batch_id,
        "send_at": iso(notif.send_at) if notif.send_at is not None else None,
        "priority": notif.priority,
        "deliveries": deliveries,
    }


@route(router, "POST", "/notification-cancel/{notification_id}", status_code=202, response_model=CancelResult)
async def cancel_notification(request: Request, notification_id: str, user: CurrentUser) -> dict[str, Any]:
    """Cancel a notification you sent that has not gone out: a scheduled one, or deliveries
    still queued or deferred by quiet hours. Nothing left to cancel (every delivery already
    sent or in flight) is 409; another user's notification is 404.
    """
    ledger = state.ledger(request)
    notif = await ledger.get_notification(notification_id)
    if notif is None or not (user.sub == notif.sender or user.is_admin):
        raise NotFound("No such notification.", code="notification_not_found")
    cancelled, left = await ledger.cancel(notif)
    if cancelled == 0 and not await ledger.is_cancelled(notification_id):
        states = ", ".join(f"{n} {name}" for name, n in sorted(left.items())) or "none"
        raise Conflict(
            f"Nothing left to cancel: its deliveries are already out ({states}).",
            code="notification_already_sent",
        )
    if cancelled == -1 and notif.send_at is not None:
        NOTIFICATIONS_SCHEDULED.labels("cancelled").inc()
    return {
        "notification_id": notification_id,
        "status": "cancelled",
        "cancelled_deliveries": max(0, cancelled),
    }


@route(router, "GET", "/notification-preferences", response_model=Preferences)
async def get_preferences(request: Request, user: CurrentUser) -> dict[str, Any]:
    """Your channels (on or off) and quiet hours; the defaults until you set them."""
    return PreferenceStore.view(await state.prefs(request).get(user.sub))


@route(router, "PUT", "/notification-preferences", response_model=Preferences)
async def put_preferences(request: Request, body: Preferences, user: CurrentUser) -> dict[str, Any]:
    """Set your preferences, for notifications planned from now on.

    A channel switched off is skipped (`skipped`). During quiet hours, in your own time
    zone, deliveries wait (`deferred`) until they end; the inbox gets the notification at
    once, and `priority: critical` goes out anyway. `quiet_hours: null` removes them.
    """
    await state.prefs(request).put(user.sub, body)
    return PreferenceStore.view(body)


@route(router, "GET", "/batch-status/{batch_id}", response_model=BatchStatus)
async def batch_status(
    request: Request,
    batch_id: str,
    user: CurrentUser,
    failures: Annotated[int, Query(ge=0, le=1000, description="Failures to list.")] = 100,
) -> dict[str, Any]:
    """A batch's deliveries counted by state, and the failures (first 1000 kept)."""
    ledger = state.ledger(request)
    batch = await ledger.batch(batch_id)
    if batch is None or not (batch.get("owner") == user.sub or user.is_admin):
        raise NotFound("No such batch.", code="batch_not_found")
    counts = await ledger.batch_counts(batch_id)
    planned = counts.pop("_planned")
    count = int(batch["count"])
    in_flight = sum(counts.get(name, 0) for name in WAITING_STATES)
    return {
        "batch_id": batch_id,
        "status": "done" if planned >= count and in_flight == 0 else "in_progress",
        "count": count,
        "planned": planned,
        "created_at": batch["created_at"],
        "counts": counts,
        "failures": await ledger.batch_failures(batch_id, failures) if failures else [],
    }
