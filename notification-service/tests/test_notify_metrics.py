"""The delivery counter the alerts and the dashboard read moves with each recorded outcome.

Read from the real worker's metrics port, before and after: the value, not only the name.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from notify_fakes import FakePushService, FakeWebhookReceiver, Scripted

import testkit

Auth = Callable[..., dict[str, str]]
DELIVERIES = "smartapp_notifications_deliveries_total"
OUTCOMES = ("delivered", "retry", "failed", "gone", "expired")


def _worker_metrics(stack: Any) -> str:
    (worker,) = [p for p in stack.procs if "WORKER_METRICS_PORT" in p.env]
    return f"http://127.0.0.1:{worker.env['WORKER_METRICS_PORT']}/metrics"


def _counts(url: str, channel: str) -> dict[str, float]:
    return {o: testkit.metric_value(url, DELIVERIES, {"channel": channel, "outcome": o}) for o in OUTCOMES}


async def _settled(api: httpx.AsyncClient, headers: dict[str, str], nid: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        status: str = (await api.get(f"/notification-status/{nid}", headers=headers)).json()["status"]
        if status not in ("queued", "sending"):
            return status
        assert time.monotonic() < deadline, f"notification {nid} still {status}"
        await asyncio.sleep(0.1)


async def _counts_become(url: str, channel: str, expected: dict[str, float]) -> dict[str, float]:
    # The counter moves once the record lands, a moment after the status reads settled.
    deadline = time.monotonic() + 10
    while (now := await asyncio.to_thread(_counts, url, channel)) != expected:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    return now


async def test_webhook_outcomes_move_the_delivery_counter(
    notify_stack: Any, api: httpx.AsyncClient, auth: Auth, webhook_receiver: FakeWebhookReceiver
) -> None:
    url = _worker_metrics(notify_stack)
    before = await asyncio.to_thread(_counts, url, "webhook")
    # One receiver that answers 503 once and then 200 (a retry, then delivered), one that
    # refuses for good with 400 (failed), one that answers 200 at once (delivered).
    plan = [
        ("retried", [Scripted(503)], "delivered"),
        ("refused", [Scripted(400)], "failed"),
        ("ok", [], "delivered"),
    ]
    for _, answers, expected_status in plan:
        user = f"metrics-{uuid.uuid4().hex[:10]}"
        headers = auth(user, "")
        hook = webhook_receiver.new_hook()
        r = await api.post("/devices/", headers=headers, json={"channel": "webhook", "url": hook.url})
        assert r.status_code == 201, r.text
        hook.secret = r.json()["secret"]
        webhook_receiver.script(hook, *answers)
        r = await api.post("/send-notification/", headers=headers, json={"user_id": user, "title": "m"})
        assert r.status_code == 202, r.text
        assert await _settled(api, headers, r.json()["notification_id"]) == expected_status
    expected = {**before}
    expected["delivered"] += 2
    expected["retry"] += 1
    expected["failed"] += 1
    assert await _counts_become(url, "webhook", expected) == expected


async def test_a_pruned_push_subscription_counts_as_gone(
    notify_stack: Any, api: httpx.AsyncClient, auth: Auth, push_service: FakePushService
) -> None:
    url = _worker_metrics(notify_stack)
    before = await asyncio.to_thread(_counts, url, "webpush")
    user = f"metrics-{uuid.uuid4().hex[:10]}"
    headers = auth(user, "")
    push_service.expected_public_key = (await api.get("/webpush/vapid-public-key")).json()["public_key"]
    browser = push_service.new_browser()
    r = await api.post(
        "/devices/", headers=headers, json={"channel": "webpush", "subscription": browser.subscription()}
    )
    assert r.status_code == 201, r.text
    push_service.script(browser, Scripted(410))
    r = await api.post("/send-notification/", headers=headers, json={"user_id": user, "title": "m"})
    assert r.status_code == 202, r.text
    await _settled(api, headers, r.json()["notification_id"])
    expected = {**before, "gone": before["gone"] + 1}
    assert await _counts_become(url, "webpush", expected) == expected
