"""notification-service's HTTP API: devices, sending, delivery status, the inbox."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from notification_service import webpush
from notification_service.devices import Devices, DeviceSecretError, RegistrationContended, TooManyDevices
from notification_service.inbox import Inbox, inbox_channel, sse_event
from notification_service.ledger import Ledger
from notification_service.ledger_keys import WAITING_STATES
from notification_service.notification import Notification
from notification_service.preferences import Preferences, PreferenceStore
from notification_service.schemas import (
    MAX_SCHEDULE_DAYS,
    BatchAccepted,
    BatchIn,
    BatchStatus,
    CancelResult,
    DeviceIn,
    DeviceList,
    DeviceOut,
    InboxPage,
    NotificationAccepted,
    NotificationIn,
    NotificationStatus,
    ReadResult,
    VapidPublicKey,
)
from notification_service.sending import TooLarge, aggregate_status, build, iso
from notification_service.settings import NotificationSettings
from shared import (
    API_PREFIX,
    NOTIFICATIONS_SCHEDULED,
    STREAM_RESPONSES,
    Allowlist,
    Conflict,
    CurrentUser,
    EventsDep,
    Forbidden,
    Idempotency,
    IdempotencyKey,
    NotFound,
    OutboundRefused,
    OutboundUnreachable,
    Principal,
    QueueName,
    ServiceUnavailable,
    Signal,
    Unprocessable,
    check_url,
    require_scope,
    resolve_checked,
    route,
    submit_task,
    webhooks,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix=API_PREFIX, tags=["notifications"])
SEND_SCOPE = "notify:send"
SSE_BATCH = 100
MAX_SEQ = 2**63 - 1
# A batch fans out to many deliveries: it always needs notify:send, even to yourself.
SendUser = Annotated[Principal, Depends(require_scope(SEND_SCOPE))]
SSE_KEEPALIVE_SECONDS = 15.0
RESOLVE_TIMEOUT_SECONDS = 3.0


def _settings(request: Request) -> NotificationSettings:
    settings: NotificationSettings = request.app.state.settings
    return settings


def _ledger(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.ledger
    return ledger


def _inbox(request: Request) -> Inbox:
    inbox: Inbox = request.app.state.inbox
    return inbox


def _prefs(request: Request) -> PreferenceStore:
    prefs: PreferenceStore = request.app.state.prefs
    return prefs


def _devices(request: Request) -> Devices:
    devices: Devices = request.app.state.devices
    return devices


def _allowlist(request: Request) -> Allowlist:
    allowlist: Allowlist = request.app.state.allowlist
    return allowlist


async def _check_target(url: str, allowlist: Allowlist, field: str) -> None:
    """Refuse a URL the workers would refuse to reach (SSRF rules), at registration."""
    try:
        checked = check_url(url, allowlist)
        if checked.scheme != "https" and not checked.allowlisted:
            raise OutboundRefused("plain http only for hosts in OUTBOUND_ALLOWLIST; use https")
        if checked.ip is None:
            async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                await resolve_checked(checked.host, checked.port, allowlist)
    except OutboundRefused as exc:
        raise Unprocessable(
            f"{field} is not allowed as an outbound target: {exc.reason}.", code="url_not_allowed"
        ) from None
    except (OutboundUnreachable, TimeoutError):
        # Not resolvable right now: it is checked again before every delivery.
        pass


@route(
    router,
    "POST",
    "/devices/",
    status_code=201,
    response_model=DeviceOut,
    responses={200: {"model": DeviceOut, "description": "You already had this device: here it is."}},
)
async def register_device(
    request: Request, response: Response, body: DeviceIn, user: CurrentUser
) -> dict[str, Any]:
    """Register one of your devices: a Web Push subscription or a webhook URL.

    Registering the same push endpoint or webhook URL again answers the device you already
    have (200, refreshed and re-enabled) instead of adding a second one; a new device is 201.
    A webhook device's `secret` (Standard Webhooks, `whsec_...`) is in these answers only.
    """
    allowlist = _allowlist(request)
    devices = _devices(request)
    try:
        if body.subscription is not None:
            try:
                sub = webpush.parse_subscription(body.subscription.model_dump(), allowlisted=allowlist.allows)
            except webpush.InvalidSubscription as exc:
                raise Unprocessable(str(exc), code="invalid_subscription") from None
            await _check_target(sub.endpoint, allowlist, "subscription.endpoint")
            device, created = await devices.add_webpush(user.sub, sub, body.name)
            response.status_code = 201 if created else 200
            return device.view()
        assert body.url is not None
        await _check_target(body.url, allowlist, "url")
        device, created = await devices.add_webhook(user.sub, body.url, webhooks.generate_secret(), body.name)
        response.status_code = 201 if created else 200
        # The owner's own secret, again: a client that lost the first answer can still verify.
        return {**device.view(), "secret": devices.signing_secret(device)}
    except TooManyDevices:
        limit = _settings(request).notify_max_devices_per_user
        raise Unprocessable(
            f"You have {limit} devices, the most allowed; delete one first.",
            code="too_many_devices",
        ) from None
    except DeviceSecretError as exc:
        raise Conflict(f"{exc}.", code="device_secret_unavailable") from None
    except RegistrationContended:
        raise Conflict(
            "This device is being registered and removed at the same time; try again.",
            code="device_registration_conflict",
        ) from None


@route(router, "GET", "/devices/", response_model=DeviceList)
async def list_devices(request: Request, user: CurrentUser) -> dict[str, Any]:
    """Your devices, oldest first (secrets are never shown again)."""
    devices = [d.view() for d in await _devices(request).list_for(user.sub)]
    return {"devices": devices, "count": len(devices)}


@route(router, "DELETE", "/devices/{device_id}", status_code=204)
async def delete_device(request: Request, device_id: str, user: CurrentUser) -> Response:
    """Remove one of your devices; nothing more is sent to it."""
    if not await _devices(request).delete(user.sub, device_id):
        raise NotFound("No such device.", code="device_not_found")
    return Response(status_code=204)


@route(router, "GET", "/webpush/vapid-public-key", response_model=VapidPublicKey)
async def vapid_public_key(request: Request) -> dict[str, str]:
    """The applicationServerKey browsers subscribe with (public; no token needed)."""
    vapid: webpush.VapidKey | None = request.app.state.vapid
    if vapid is None:
        settings = _settings(request)
        vapid = await webpush.load_vapid_key(
            request.app.state.redis, settings.vapid_private_key, server_secret=settings.secret_key
        )
        request.app.state.vapid = vapid
    return {"public_key": vapid.public_key_b64}


def _require_send(user: Principal, recipients: set[str]) -> None:
    if recipients - {user.sub} and not user.has(SEND_SCOPE):
        raise Forbidden(f"Sending to another user needs the '{SEND_SCOPE}' scope.", code="insufficient_scope")


def _build(
    request: Request,
    item: NotificationIn,
    user: Principal,
    now: float,
    where: str,
    **ids: str | None,
) -> Any:
    if item.send_at is not None:
        try:
            at = item.send_at.timestamp()
        except (OverflowError, OSError, ValueError):  # e.g. 0001-01-01T00:00:00+14:00
            at = 0.0
        if at <= now:
            raise Unprocessable(f"{where}send_at must be in the future.", code="invalid_send_at")
        if at > now + MAX_SCHEDULE_DAYS * 86400:
            raise Unprocessable(
                f"{where}send_at may be at most {MAX_SCHEDULE_DAYS} days ahead.", code="invalid_send_at"
            )
    try:
        return build(
            item,
            sender=user.sub,
            default_ttl=_settings(request).notify_default_ttl,
            now=now,
            **ids,
        )
    except TooLarge as exc:
        raise Unprocessable(f"{where}{exc}", code="payload_too_large") from None


def _accepted(notif: Notification, task_id: str | None) -> dict[str, Any]:
    if notif.send_at is not None:
        return {
            "notification_id": notif.notification_id,
            "task_id": None,
            "status": "scheduled",
            "send_at": iso(notif.send_at),
        }
    return {"notification_id": notif.notification_id, "task_id": task_id, "status": "queued"}


@route(router, "POST", "/send-notification/", status_code=202, response_model=NotificationAccepted)
async def send_notification(
    request: Request,
    body: NotificationIn,
    user: CurrentUser,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Send a notification to every device of `user_id`, and file it in their inbox.

    Another user than yourself needs scope `notify:send`. With `Idempotency-Key`, a repeat
    answers the first notification and sends nothing again. With `send_at` it is held
    (status `scheduled`, cancellable) and sent, and filed in the inbox, at that time.
    """
    _require_send(user, {body.user_id})
    task_id = str(uuid.uuid4())
    notif = _build(request, body, user, time.time(), "", task_id=task_id)
    idem = Idempotency(request.app.state.redis, "notify")
    if idempotency_key is not None:
        fingerprint = _fingerprint(body.model_dump(mode="json"))
        earlier = await idem.claim(
            user.sub, idempotency_key, fingerprint, f"{notif.notification_id} {task_id}"
        )
        if earlier is not None:
            nid, _, tid = earlier.partition(" ")
            first = await _ledger(request).get_notification(nid)
            if first is not None and first.send_at is not None:
                return _accepted(first, None)
            return {"notification_id": nid, "task_id": tid, "status": "queued"}
    if notif.send_at is not None:
        # Held in Redis, not on the broker: the workers' pump publishes it when it is due.
        await _ledger(request).schedule([notif])
        NOTIFICATIONS_SCHEDULED.labels("scheduled").inc()
        return _accepted(notif, None)
    inbox = _inbox(request)
    await inbox.land([notif])
    try:
        await submit_task(
            celery_app=request.app.state.celery,
            records=request.app.state.records,
            user=user,
            task_name="notifications.deliver",
            task_type="notification",
            queue=QueueName.NOTIFICATIONS.value,
            kwargs={"notification_ids": [notif.notification_id]},
            task_id=task_id,
        )
    except ServiceUnavailable:
        await inbox.discard([notif])
        if idempotency_key is not None:
            await idem.release(user.sub, idempotency_key)
        raise
    return {"notification_id": notif.notification_id, "task_id": task_id, "status": "queued"}


def _fingerprint(body: Any) -> str:
    from shared._submit import body_fingerprint

    return body_fingerprint(body)


@route(
    router,
    "POST",
    "/batch-notifications/",
    status_code=202,
    response_model=BatchAccepted,
    responses={403: {"description": "The token lacks the notify:send scope."}},
)
async def batch_notifications(
    request: Request,
    body: BatchIn,
    user: SendUser,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Send up to 10,000 notifications at once (scope `notify:send`); each is tracked per delivery.

    The answer holds every notification's id, in request order; follow the batch at
    `batch-status/{batch_id}`.
    """
    settings = _settings(request)
    if len(body.notifications) > settings.notify_max_batch:
        raise Unprocessable(
            f"A batch holds at most {settings.notify_max_batch} notifications.",
            code="batch_too_large",
        )
    batch_id, task_id = str(uuid.uuid4()), str(uuid.uuid4())
    now = time.time()
    notifs = [
        _build(request, item, user, now, f"notifications[{i}]: ", batch_id=batch_id)
        for i, item in enumerate(body.notifications)
    ]
    nids = [n.notification_id for n in notifs]
    ledger = _ledger(request)
    idem = Idempotency(request.app.state.redis, "notify-batch")
    if idempotency_key is not None:
        fingerprint = _fingerprint(body.model_dump(mode="json"))
        earlier = await idem.claim(user.sub, idempotency_key, fingerprint, f"{batch_id} {task_id}")
        if earlier is not None:
            bid, _, tid = earlier.partition(" ")
            ids = await ledger.batch_ids(bid)
            if not ids:
                raise Conflict(
                    "The first request with this Idempotency-Key is still being accepted.",
                    code="idempotency_in_progress",
                )
            return {"batch_id": bid, "task_id": tid, "count": len(ids), "notification_ids": ids}
    await ledger.create_batch(batch_id, user.sub, nids, task_id, iso(now))
    inbox = _inbox(request)
    later = [n for n in notifs if n.send_at is not None]
    notifs = [n for n in notifs if n.send_at is None]
    await inbox.land(notifs)
    if later:
        await ledger.schedule(later)
        NOTIFICATIONS_SCHEDULED.labels("scheduled").inc(len(later))
    try:
        await submit_task(
            celery_app=request.app.state.celery,
            records=request.app.state.records,
            user=user,
            task_name="notifications.deliver_batch",
            task_type="notification_batch",
            queue=QueueName.NOTIFICATIONS.value,
            kwargs={"batch_id": batch_id},
            task_id=task_id,
        )
    except ServiceUnavailable:
        await inbox.discard(notifs)
        await ledger.unschedule([n.notification_id for n in later])
        await ledger.discard_batch(batch_id)
        if idempotency_key is not None:
            await idem.release(user.sub, idempotency_key)
        raise
    return {"batch_id": batch_id, "task_id": task_id, "count": len(nids), "notification_ids": nids}


@route(router, "GET", "/notification-status/{notification_id}", response_model=NotificationStatus)
async def notification_status(request: Request, notification_id: str, user: CurrentUser) -> dict[str, Any]:
    """Where a notification stands on each device, with every attempt.

    Visible to its sender and its recipient; any other id is 404.
    """
    ledger = _ledger(request)
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
    ledger = _ledger(request)
    notif = await ledger.get_notification(notification_id)
    if notif is None or not (user.sub == notif.sender or user.is_admin):
        raise NotFound("No such notification.", code="notification_not_found")
    cancelled, left = await ledger.cancel(notif)
    if cancelled == 0 and not await ledger.is_cancelled(notification_id):
        states = ", ".join(f"{n} {state}" for state, n in sorted(left.items())) or "none"
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
    return PreferenceStore.view(await _prefs(request).get(user.sub))


@route(router, "PUT", "/notification-preferences", response_model=Preferences)
async def put_preferences(request: Request, body: Preferences, user: CurrentUser) -> dict[str, Any]:
    """Set your preferences, for notifications planned from now on.

    A channel switched off is skipped (`skipped`). During quiet hours, in your own time
    zone, deliveries wait (`deferred`) until they end; the inbox gets the notification at
    once, and `priority: critical` goes out anyway. `quiet_hours: null` removes them.
    """
    await _prefs(request).put(user.sub, body)
    return PreferenceStore.view(body)


@route(router, "GET", "/batch-status/{batch_id}", response_model=BatchStatus)
async def batch_status(
    request: Request,
    batch_id: str,
    user: CurrentUser,
    failures: Annotated[int, Query(ge=0, le=1000, description="Failures to list.")] = 100,
) -> dict[str, Any]:
    """A batch's deliveries counted by state, and the failures (first 1000 kept)."""
    ledger = _ledger(request)
    batch = await ledger.batch(batch_id)
    if batch is None or not (batch.get("owner") == user.sub or user.is_admin):
        raise NotFound("No such batch.", code="batch_not_found")
    counts = await ledger.batch_counts(batch_id)
    planned = counts.pop("_planned")
    count = int(batch["count"])
    in_flight = sum(counts.get(state, 0) for state in WAITING_STATES)
    return {
        "batch_id": batch_id,
        "status": "done" if planned >= count and in_flight == 0 else "in_progress",
        "count": count,
        "planned": planned,
        "created_at": batch["created_at"],
        "counts": counts,
        "failures": await ledger.batch_failures(batch_id, failures) if failures else [],
    }


@route(router, "GET", "/inbox/", response_model=InboxPage)
async def inbox_page(
    request: Request,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[int | None, Query(ge=0, description="`next_before` of the last page.")] = None,
    unread: Annotated[bool, Query(description="Only unread notifications.")] = False,
) -> dict[str, Any]:
    """Your notifications, newest first, with the number still unread."""
    return await _inbox(request).page(user.sub, limit=limit, before=before, unread_only=unread)


@route(router, "POST", "/inbox/{notification_id}/read", response_model=ReadResult)
async def mark_read(request: Request, notification_id: str, user: CurrentUser) -> dict[str, Any]:
    """Mark one notification of your inbox as read."""
    inbox = _inbox(request)
    if await inbox.mark_read(user.sub, notification_id) is None:
        raise NotFound("No such notification in your inbox.", code="notification_not_found")
    return {
        "notification_id": notification_id,
        "read": True,
        "unread_count": await inbox.unread_count(user.sub),
    }


@route(router, "POST", "/inbox/read-all", response_model=ReadResult)
async def mark_all_read(request: Request, user: CurrentUser) -> dict[str, Any]:
    """Mark every notification of your inbox as read."""
    await _inbox(request).mark_all_read(user.sub)
    return {"read": True, "unread_count": 0}


@route(router, "GET", "/inbox/stream", responses=STREAM_RESPONSES)
async def inbox_stream(
    request: Request,
    user: CurrentUser,
    events: EventsDep,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=19,
            pattern="^[0-9]+$",
            description="The inbox seq to resume after (an event id this stream sent).",
        ),
    ] = None,
    since: Annotated[int | None, Query(ge=0, le=MAX_SEQ, description="Resume after this seq.")] = None,
) -> StreamingResponse:
    """Server-sent events: each new notification of your inbox as `event: notification`.

    The event id is the inbox `seq`; reconnecting with `Last-Event-ID` resumes after it,
    so nothing is missed. Without it the stream starts with what arrives next.
    """
    inbox = _inbox(request)
    start: int | None = since
    if last_event_id is not None:
        raw = last_event_id.strip()
        if not raw.isdigit() or len(raw) > len(str(MAX_SEQ)) or int(raw) > MAX_SEQ:
            raise Unprocessable("Last-Event-ID must be an inbox seq number.", code="invalid_event_id")
        start = int(raw)
    cursor = start if start is not None else await inbox.last_seq(user.sub)

    async def events_() -> AsyncIterator[bytes]:
        # Push, not poll: landing a notification PUBLISHes on the user's channel, and the
        # process's one subscriber (shared.EventHub) wakes this stream. An idle stream costs
        # Redis nothing but a re-read per keep-alive, which bounds any missed wake-up.
        nonlocal cursor
        try:
            async with events.listen(inbox_channel(user.sub)) as listener:
                yield b"retry: 2000\n\n"
                while True:
                    items = await inbox.after(user.sub, cursor, limit=SSE_BATCH)
                    for item in items:
                        cursor = max(cursor, int(item["seq"]))
                        yield sse_event(item)
                    if len(items) == SSE_BATCH:
                        continue  # more waiting
                    if await listener.get(SSE_KEEPALIVE_SECONDS) is Signal.TIMEOUT:
                        yield b": keep-alive\n\n"
        except (TimeoutError, RedisError, OSError) as exc:
            # Redis went away mid-stream: end it; the client reconnects with Last-Event-ID.
            log.warning("inbox stream ended early: %s", type(exc).__name__)

    return StreamingResponse(
        events_(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
