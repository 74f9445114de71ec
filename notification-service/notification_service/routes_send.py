"""The sending routes: one notification (now or at its send_at) and batches of up to 10,000,
each accepted into the inbox and the ledger and handed to the workers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from notification_service import state
from notification_service.ledger_keys import iso
from notification_service.notification import Notification
from notification_service.schemas import (
    MAX_SCHEDULE_DAYS,
    BatchAccepted,
    BatchIn,
    NotificationAccepted,
    NotificationIn,
)
from notification_service.sending import TooLarge, build
from shared import (
    API_PREFIX,
    NOTIFICATIONS_SCHEDULED,
    Conflict,
    CurrentUser,
    Forbidden,
    Idempotency,
    IdempotencyKey,
    Principal,
    QueueName,
    SendUser,
    ServiceUnavailable,
    Unprocessable,
    body_fingerprint,
    route,
    submit_task,
)

router = APIRouter(prefix=API_PREFIX, tags=["notifications"])
SEND_SCOPE = "notify:send"


def require_send(user: Principal, recipients: set[str]) -> None:
    if recipients - {user.sub} and not user.has(SEND_SCOPE):
        raise Forbidden(f"Sending to another user needs the '{SEND_SCOPE}' scope.", code="insufficient_scope")


def _accepted(notif: Notification, task_id: str | None) -> dict[str, Any]:
    if notif.send_at is not None:
        return {
            "notification_id": notif.notification_id,
            "task_id": None,
            "status": "scheduled",
            "send_at": iso(notif.send_at),
        }
    return {"notification_id": notif.notification_id, "task_id": task_id, "status": "queued"}


@dataclass(frozen=True, slots=True)
class _Key:
    """A request's Idempotency-Key, if it has one, in one scope: claimed for the two ids the
    request makes, and freed when handing the work off fails, so that a retry is a new request."""

    idem: Idempotency
    owner: str
    key: str | None

    async def claim(
        self, body: BaseModel, first: str, second: str, recorded: Callable[[str, str], Awaitable[bool]]
    ) -> tuple[str, str] | None:
        """The earlier request's two ids when this one repeats it, else None (claimed now).

        `recorded(first, second)`: whether the earlier request's work exists (a claim left by a
        process that died before recording it is taken over: see Idempotency.claim).
        """
        if self.key is None:
            return None
        fingerprint = body_fingerprint(body.model_dump(mode="json"))

        async def exists(ids: str) -> bool:
            one, _, two = ids.partition(" ")
            return await recorded(one, two)

        earlier = await self.idem.claim(self.owner, self.key, fingerprint, f"{first} {second}", exists)
        if earlier is None:
            return None
        first, _, second = earlier.partition(" ")
        return first, second

    async def release(self) -> None:
        if self.key is not None:
            await self.idem.release(self.owner, self.key)


@dataclass(frozen=True, slots=True)
class Sender:
    """One sending request: its caller, its Idempotency-Key, and the app it reaches."""

    request: Request
    user: Principal
    idempotency_key: str | None

    def check(self, item: NotificationIn, now: float, where: str, **ids: str | None) -> Notification:
        """The record `item` makes, or its 422 (`where` names the item in a batch)."""
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
                sender=self.user.sub,
                default_ttl=state.settings(self.request).notify_default_ttl,
                now=now,
                **ids,
            )
        except TooLarge as exc:
            raise Unprocessable(f"{where}{exc}", code="payload_too_large") from None

    def key(self, scope: str) -> _Key:
        return _Key(Idempotency(self.request.app.state.redis, scope), self.user.sub, self.idempotency_key)

    async def hand_off(
        self,
        task: tuple[str, str],
        kwargs: dict[str, Any],
        task_id: str,
        key: _Key,
        undo: Callable[[], Awaitable[None]],
    ) -> None:
        """Queue the task (its name and type) for the workers; with the broker down, take back
        what was accepted (`undo`) and the Idempotency-Key, and answer 503."""
        task_name, task_type = task
        try:
            await submit_task(
                celery_app=self.request.app.state.celery,
                records=self.request.app.state.records,
                user=self.user,
                task_name=task_name,
                task_type=task_type,
                queue=QueueName.NOTIFICATIONS.value,
                kwargs=kwargs,
                task_id=task_id,
            )
        except ServiceUnavailable:
            await undo()
            await key.release()
            raise


async def _sender(request: Request, user: CurrentUser, idempotency_key: IdempotencyKey = None) -> Sender:
    return Sender(request, user, idempotency_key)


async def _batch_sender(request: Request, user: SendUser, idempotency_key: IdempotencyKey = None) -> Sender:
    # A batch fans out to many deliveries: it always needs notify:send, even to yourself.
    return Sender(request, user, idempotency_key)


SenderDep = Annotated[Sender, Depends(_sender)]
BatchSenderDep = Annotated[Sender, Depends(_batch_sender)]


@route(router, "POST", "/send-notification/", status_code=202, response_model=NotificationAccepted)
async def send_notification(body: NotificationIn, send: SenderDep) -> dict[str, Any]:
    """Send a notification to every device of `user_id`, and file it in their inbox.

    Another user than yourself needs scope `notify:send`. With `Idempotency-Key`, a repeat
    answers the first notification and sends nothing again. With `send_at` it is held
    (status `scheduled`, cancellable) and sent, and filed in the inbox, at that time.
    """
    request = send.request
    require_send(send.user, {body.user_id})
    task_id = str(uuid.uuid4())
    notif = send.check(body, time.time(), "", task_id=task_id)
    key = send.key("notify")
    records = request.app.state.records

    async def recorded(nid: str, tid: str) -> bool:
        # A held notification is its ledger entry; one sent now, its delivery task's record.
        if body.send_at is not None:
            return await state.ledger(request).get_notification(nid) is not None
        return bool(await records.exists(tid))

    earlier = await key.claim(body, notif.notification_id, task_id, recorded)
    if earlier is not None:
        nid, tid = earlier
        first = await state.ledger(request).get_notification(nid)
        if first is not None and first.send_at is not None:
            return _accepted(first, None)
        return {"notification_id": nid, "task_id": tid, "status": "queued"}
    if notif.send_at is not None:
        # Held in Redis, not on the broker: the workers' pump publishes it when it is due.
        await state.ledger(request).schedule([notif])
        NOTIFICATIONS_SCHEDULED.labels("scheduled").inc()
        return _accepted(notif, None)
    inbox = state.inbox(request)
    await inbox.land([notif])

    async def undo() -> None:
        await inbox.discard([notif])

    await send.hand_off(
        ("notifications.deliver", "notification"),
        {"notification_ids": [notif.notification_id]},
        task_id,
        key,
        undo,
    )
    return {"notification_id": notif.notification_id, "task_id": task_id, "status": "queued"}


@route(router, "POST", "/batch-notifications/", status_code=202, response_model=BatchAccepted)
async def batch_notifications(body: BatchIn, send: BatchSenderDep) -> dict[str, Any]:
    """Send up to 10,000 notifications at once (scope `notify:send`); each is tracked per delivery.

    The answer holds every notification's id, in request order; follow the batch at
    `batch-status/{batch_id}`.
    """
    request = send.request
    settings = state.settings(request)
    if len(body.notifications) > settings.notify_max_batch:
        raise Unprocessable(
            f"A batch holds at most {settings.notify_max_batch} notifications.",
            code="batch_too_large",
        )
    batch_id, task_id = str(uuid.uuid4()), str(uuid.uuid4())
    now = time.time()
    notifs = [
        send.check(item, now, f"notifications[{i}]: ", batch_id=batch_id)
        for i, item in enumerate(body.notifications)
    ]
    nids = [n.notification_id for n in notifs]
    ledger = state.ledger(request)
    key = send.key("notify-batch")
    records = request.app.state.records

    async def recorded(_: str, tid: str) -> bool:
        return bool(await records.exists(tid))  # every batch hands its delivery task off

    earlier = await key.claim(body, batch_id, task_id, recorded)
    if earlier is not None:
        bid, tid = earlier
        ids = await ledger.batch_ids(bid)
        if not ids:
            raise Conflict(
                "The first request with this Idempotency-Key is still being accepted.",
                code="idempotency_in_progress",
            )
        return {"batch_id": bid, "task_id": tid, "count": len(ids), "notification_ids": ids}
    await ledger.create_batch(batch_id, send.user.sub, nids, task_id, iso(now))
    inbox = state.inbox(request)
    later = [n for n in notifs if n.send_at is not None]
    notifs = [n for n in notifs if n.send_at is None]
    await inbox.land(notifs)
    if later:
        await ledger.schedule(later)
        NOTIFICATIONS_SCHEDULED.labels("scheduled").inc(len(later))

    async def undo() -> None:
        await inbox.discard(notifs)
        await ledger.unschedule([n.notification_id for n in later])
        await ledger.discard_batch(batch_id)

    await send.hand_off(
        ("notifications.deliver_batch", "notification_batch"),
        {"batch_id": batch_id},
        task_id,
        key,
        undo,
    )
    return {"batch_id": batch_id, "task_id": task_id, "count": len(nids), "notification_ids": nids}
