"""Scheduled sends, cancellation, preferences and quiet hours on the real stack.

The real API and Celery worker, the local push service and the webhook receiver that
verifies every signature. Quiet hours are minutes on a wall clock, so the window is put
around the current minute of the chosen zone; the scheduled sends and the worker restart
happen while it runs.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from notify_fakes import FakePushService, FakeWebhookReceiver, Hook

import testkit

Auth = Callable[..., dict[str, str]]
ZONE = "Asia/Kolkata"  # +05:30: the window is on this wall clock, not UTC's
DEFERRED_COUNTED = "smartapp_notifications_deliveries_total"


def _user(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:10]}"


async def _eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"condition not met in {timeout}s; last: {last!r}")


async def _status(api: httpx.AsyncClient, headers: dict[str, str], nid: str) -> dict[str, Any]:
    r = await api.get(f"/notification-status/{nid}", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _reaches(api: httpx.AsyncClient, headers: dict[str, str], nid: str, state: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        body = await _status(api, headers, nid)
        return body if body["status"] == state else None

    found: dict[str, Any] = await _eventually(check, timeout=90.0)
    return found


async def _send(api: httpx.AsyncClient, headers: dict[str, str], user: str, **extra: Any) -> dict[str, Any]:
    payload = {"user_id": user, "title": "Hello", "message": "later", **extra}
    r = await api.post("/send-notification/", headers=headers, json=payload)
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


async def _hook(api: httpx.AsyncClient, headers: dict[str, str], receiver: FakeWebhookReceiver) -> Hook:
    hook = receiver.new_hook()
    r = await api.post("/devices/", headers=headers, json={"channel": "webhook", "url": hook.url})
    assert r.status_code == 201, r.text
    hook.secret = r.json()["secret"]
    return hook


async def _inbox_ids(api: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    r = await api.get("/inbox/", headers=headers)
    assert r.status_code == 200, r.text
    return [item["notification_id"] for item in r.json()["items"]]


def _quiet_window_ending_soon() -> tuple[dict[str, str], datetime]:
    """Quiet hours from this minute to the next (or the one after, when the next is too
    close to send and look before it), on ZONE's wall clock; and when they end, in UTC."""
    now = datetime.now(ZoneInfo(ZONE))
    start = now.replace(second=0, microsecond=0)
    end = start + timedelta(minutes=1)
    if (end - now).total_seconds() < 6:
        end += timedelta(minutes=1)
    quiet = {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"), "timezone": ZONE}
    return quiet, end.astimezone(UTC)


def _iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def _metric(stack: Any, outcome: str) -> float:
    worker = stack.procs[1]
    url = f"http://127.0.0.1:{worker.env['WORKER_METRICS_PORT']}/metrics"
    return testkit.metric_value(url, DEFERRED_COUNTED, {"outcome": outcome})


async def test_quiet_hours_defer_then_send_once_and_scheduled_sends_survive_a_worker_restart(
    api: httpx.AsyncClient,
    auth: Auth,
    notify_stack: Any,
    webhook_receiver: FakeWebhookReceiver,
    push_service: FakePushService,
) -> None:
    # -- quiet hours: a user with a webhook and a browser, push switched off ----------------
    quiet_user = _user("quiet")
    qh = auth(quiet_user, "")
    quiet_hook = await _hook(api, qh, webhook_receiver)
    push_service.expected_public_key = (await api.get("/webpush/vapid-public-key")).json()["public_key"]
    browser = push_service.new_browser()
    r = await api.post(
        "/devices/", headers=qh, json={"channel": "webpush", "subscription": browser.subscription()}
    )
    assert r.status_code == 201, r.text
    quiet, quiet_ends = _quiet_window_ending_soon()
    prefs = {"channels": {"webpush": False, "webhook": True}, "quiet_hours": quiet}
    r = await api.put("/notification-preferences", headers=qh, json=prefs)
    assert r.status_code == 200 and r.json() == prefs, r.text
    deferred_before = await asyncio.to_thread(_metric, notify_stack, "deferred")
    skipped_before = await asyncio.to_thread(_metric, notify_stack, "skipped")

    waiting = await _send(api, qh, quiet_user)
    status = await _reaches(api, qh, waiting["notification_id"], "deferred")
    by_channel = {d["channel"]: d for d in status["deliveries"]}
    assert by_channel["webhook"]["status"] == "deferred" and by_channel["webhook"]["attempts"] == 0
    went_at = datetime.fromisoformat(by_channel["webhook"]["next_attempt_at"].replace("Z", "+00:00"))
    assert abs((went_at - quiet_ends).total_seconds()) < 1
    assert by_channel["webpush"]["status"] == "skipped"
    # The inbox has it at once.
    assert waiting["notification_id"] in await _inbox_ids(api, qh)

    critical = await _send(api, qh, quiet_user, priority="critical")
    status = await _reaches(api, qh, critical["notification_id"], "delivered")
    assert {d["channel"]: d["status"] for d in status["deliveries"]} == {
        "webhook": "delivered",
        "webpush": "skipped",
    }
    assert [json.loads(b)["data"]["notification_id"] for b in quiet_hook.received] == [
        critical["notification_id"]
    ]
    assert browser.received == []
    assert await asyncio.to_thread(_metric, notify_stack, "deferred") == deferred_before + 1
    assert await asyncio.to_thread(_metric, notify_stack, "skipped") == skipped_before + 2

    # -- scheduled sends: one kept, one cancelled; the worker is down when they come due --
    sched_user = _user("sched")
    sh = auth(sched_user, "")
    sched_hook = await _hook(api, sh, webhook_receiver)
    kept = await _send(api, sh, sched_user, send_at=_iso_in(5))
    dropped = await _send(api, sh, sched_user, send_at=_iso_in(5))
    worker = notify_stack.procs[1]
    await asyncio.to_thread(worker.stop)  # before they are due
    assert kept["status"] == "scheduled" and kept["task_id"] is None
    assert (await _status(api, sh, kept["notification_id"]))["status"] == "scheduled"
    # Not in the inbox before it is sent.
    assert kept["notification_id"] not in await _inbox_ids(api, sh)
    r = await api.post(f"/notification-cancel/{dropped['notification_id']}", headers=qh)
    assert r.status_code == 404, "only its sender may cancel it"
    r = await api.post(f"/notification-cancel/{dropped['notification_id']}", headers=sh)
    assert r.status_code == 202 and r.json()["status"] == "cancelled", r.text
    assert (await _status(api, sh, dropped["notification_id"]))["status"] == "cancelled"
    due = datetime.fromisoformat(kept["send_at"].replace("Z", "+00:00"))
    await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 1)
    # Past send_at with no worker: nothing moved.
    assert (await _status(api, sh, kept["notification_id"]))["status"] == "scheduled"
    assert sched_hook.received == []
    notify_stack.procs[1] = await asyncio.to_thread(
        testkit.start_worker,
        "notification_service.worker",
        "notifications",
        notify_stack.env,
        notify_stack.log_dir,
    )
    status = await _reaches(api, sh, kept["notification_id"], "delivered")
    assert status["deliveries"][0]["attempts"] == 1
    assert kept["notification_id"] in await _inbox_ids(api, sh)

    # -- the quiet hours end: the deferred delivery goes out, once ----------------------------
    status = await _reaches(api, qh, waiting["notification_id"], "delivered")
    webhook = next(d for d in status["deliveries"] if d["channel"] == "webhook")
    assert webhook["attempts"] == 1
    assert datetime.fromisoformat(webhook["history"][0]["at"].replace("Z", "+00:00")) >= quiet_ends
    r = await api.post(f"/notification-cancel/{waiting['notification_id']}", headers=qh)
    assert r.status_code == 409, r.text
    await asyncio.sleep(1.5)  # anything sent twice would have arrived by now
    assert [json.loads(b)["data"]["notification_id"] for b in quiet_hook.received] == [
        critical["notification_id"],
        waiting["notification_id"],
    ]
    assert [json.loads(b)["data"]["notification_id"] for b in sched_hook.received] == [
        kept["notification_id"]
    ]
    assert dropped["notification_id"] not in await _inbox_ids(api, sh)
    assert webhook_receiver.attempts[sched_hook.name] == 1 and webhook_receiver.attempts[quiet_hook.name] == 2
    assert sched_hook.duplicate_ids == quiet_hook.duplicate_ids == [] and webhook_receiver.rejections == []
    assert browser.received == []


async def test_preferences_are_per_user_and_validated(api: httpx.AsyncClient, auth: Auth) -> None:
    alice, bob = auth(_user("alice"), ""), auth(_user("bob"), "")
    defaults = {"channels": {"webpush": True, "webhook": True}, "quiet_hours": None}
    assert (await api.get("/notification-preferences", headers=alice)).json() == defaults
    mine = {"channels": {"webpush": True, "webhook": False}, "quiet_hours": None}
    r = await api.put("/notification-preferences", headers=alice, json=mine)
    assert r.status_code == 200 and r.json() == mine
    assert (await api.get("/notification-preferences", headers=alice)).json() == mine
    assert (await api.get("/notification-preferences", headers=bob)).json() == defaults
    for quiet in (
        {"start": "22:00", "end": "22:00", "timezone": "Europe/Paris"},
        {"start": "25:00", "end": "07:00", "timezone": "Europe/Paris"},
        {"start": "22:00", "end": "07:00", "timezone": "Europe/Atlantis"},
    ):
        r = await api.put("/notification-preferences", headers=alice, json={"quiet_hours": quiet})
        assert r.status_code == 422, quiet
        assert r.json()["error"]["code"] == "validation_error"
    r = await api.put("/notification-preferences", headers=alice, json={"channels": {"sms": True}})
    assert r.status_code == 422
    assert (await api.get("/notification-preferences", headers=alice)).json() == mine


async def test_send_at_is_validated(api: httpx.AsyncClient, auth: Auth) -> None:
    user = _user("when")
    h = auth(user, "notify:send")
    for send_at, code in (
        (_iso_in(-60), "invalid_send_at"),
        (_iso_in(31 * 86400), "invalid_send_at"),
        ("2030-01-01T10:00:00", "validation_error"),  # no offset: whose 10:00?
        ("next tuesday", "validation_error"),
    ):
        r = await api.post(
            "/send-notification/", headers=h, json={"user_id": user, "title": "t", "send_at": send_at}
        )
        assert r.status_code == 422, (send_at, r.text)
        assert r.json()["error"]["code"] == code
    r = await api.post(
        "/batch-notifications/",
        headers=h,
        json={
            "notifications": [
                {"user_id": user, "title": "a"},
                {"user_id": user, "title": "b", "send_at": _iso_in(-1)},
            ]
        },
    )
    assert r.status_code == 422 and "notifications[1]" in r.json()["error"]["message"]
    r = await api.post("/notification-cancel/no-such-id", headers=h)
    assert r.status_code == 404


async def test_a_batch_item_with_send_at_waits_and_can_be_cancelled(
    api: httpx.AsyncClient, auth: Auth, webhook_receiver: FakeWebhookReceiver
) -> None:
    user = _user("batch")
    h = auth(user, "notify:send")
    hook = await _hook(api, h, webhook_receiver)
    items = [
        {"user_id": user, "title": "now"},
        {"user_id": user, "title": "soon", "send_at": _iso_in(2)},
        {"user_id": user, "title": "never", "send_at": _iso_in(2)},
    ]
    r = await api.post("/batch-notifications/", headers=h, json={"notifications": items})
    assert r.status_code == 202, r.text
    now_id, soon_id, never_id = r.json()["notification_ids"]
    batch_id = r.json()["batch_id"]
    assert (await api.post(f"/notification-cancel/{never_id}", headers=h)).status_code == 202
    await _reaches(api, h, now_id, "delivered")
    await _reaches(api, h, soon_id, "delivered")

    async def done() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/batch-status/{batch_id}", headers=h)).json()
        return body if body["status"] == "done" else None

    batch = await _eventually(done)
    assert batch["counts"]["delivered"] == 2 and batch["planned"] == 3
    titles = sorted(json.loads(b)["data"]["title"] for b in hook.received)
    assert titles == ["now", "soon"]
