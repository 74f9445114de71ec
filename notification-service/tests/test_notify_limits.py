"""Notifications cannot flood a third party (API.md "Fair share"): one device per target,
deliveries paced per destination host, and batches only with notify:send."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from notify_fakes import FakePushService, FakeWebhookReceiver

import testkit

Auth = Callable[..., dict[str, str]]
PACE = 10  # deliveries a second to one host, in the paced stack


def _user() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def paced_api(notify_stack: Any, infra: Path) -> Iterator[str]:
    """An API and a worker of their own (own vhost) with a low pace per destination host."""
    vhost = os.environ["TEST_SESSION_VHOST"] + "_notify_paced"
    testkit.ensure_vhost(vhost)
    env = {
        **notify_stack.env,
        "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        "NOTIFY_MAX_PER_HOST_PER_SECOND": str(PACE),
        # Turns are at most 2 x 64 senders / 10 a second = 13 s away: well within a quarter
        # of this, so no claim is ever taken back while it waits for its turn.
        "NOTIFY_STUCK_AFTER_SECONDS": "120",
    }
    port = testkit.free_port()
    procs = []
    try:
        procs.append(testkit.start_api("notification_service", port, env, infra))
        procs.append(testkit.start_worker("notification_service.worker", "notifications", env, infra))
        yield f"http://127.0.0.1:{port}/smart_application/tasks"
    finally:
        for proc in reversed(procs):
            proc.stop()
        testkit.delete_vhost(vhost)


async def test_registering_the_same_target_again_returns_the_same_device(
    api: httpx.AsyncClient, auth: Auth, webhook_receiver: FakeWebhookReceiver, push_service: FakePushService
) -> None:
    headers = auth(_user(), "")
    hook = webhook_receiver.new_hook()
    body = {"channel": "webhook", "url": hook.url, "name": "first"}
    first = await api.post("/devices/", headers=headers, json=body)
    assert first.status_code == 201, first.text
    again = await api.post("/devices/", headers=headers, json={**body, "name": "renamed"})
    assert again.status_code == 200, again.text
    assert again.json()["device_id"] == first.json()["device_id"]
    assert again.json()["secret"] == first.json()["secret"] and again.json()["name"] == "renamed"

    # At once, ten times: still one device (the check and the write are one script).
    other = {"channel": "webhook", "url": webhook_receiver.new_hook().url}
    answers = await asyncio.gather(*(api.post("/devices/", headers=headers, json=other) for _ in range(10)))
    assert sorted(r.status_code for r in answers) == [200] * 9 + [201]
    assert len({r.json()["device_id"] for r in answers}) == 1

    sub = push_service.new_browser().subscription()
    push_body = {"channel": "webpush", "subscription": sub}
    p1 = await api.post("/devices/", headers=headers, json=push_body)
    p2 = await api.post("/devices/", headers=headers, json=push_body)
    assert (p1.status_code, p2.status_code) == (201, 200)
    assert p1.json()["device_id"] == p2.json()["device_id"]

    devices = (await api.get("/devices/", headers=headers)).json()
    assert devices["count"] == 3
    # Per user: another user registering the same URL gets a device of their own.
    theirs = await api.post("/devices/", headers=auth(_user(), ""), json=body)
    assert theirs.status_code == 201 and theirs.json()["device_id"] != first.json()["device_id"]
    # Deleted, then registered again: a new device.
    assert (await api.delete(f"/devices/{first.json()['device_id']}", headers=headers)).status_code == 204
    fresh = await api.post("/devices/", headers=headers, json=body)
    assert fresh.status_code == 201 and fresh.json()["device_id"] != first.json()["device_id"]


async def test_batch_without_notify_send_is_403(api: httpx.AsyncClient, auth: Auth) -> None:
    user = _user()
    items = [{"user_id": user, "title": "t"}]
    for scopes in ("", "tasks scrape cache"):
        r = await api.post("/batch-notifications/", headers=auth(user, scopes), json={"notifications": items})
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "forbidden" and "notify:send" in r.json()["error"]["message"]
    r = await api.post(
        "/batch-notifications/", headers=auth(user, "notify:send"), json={"notifications": items}
    )
    assert r.status_code == 202, r.text


async def test_batch_to_one_host_arrives_paced_and_exactly_once(
    paced_api: str, auth: Auth, webhook_receiver: FakeWebhookReceiver
) -> None:
    count = 40
    user = _user()
    headers = auth(user, "notify:send")
    async with httpx.AsyncClient(base_url=paced_api, timeout=30) as api:
        # Two devices on the one host (two URLs): the pace is the host's, not each URL's.
        hooks = []
        for _ in range(2):
            hook = webhook_receiver.new_hook()
            r = await api.post("/devices/", headers=headers, json={"channel": "webhook", "url": hook.url})
            assert r.status_code == 201, r.text
            hook.secret = r.json()["secret"]
            hooks.append(hook)
        items = [{"user_id": user, "title": f"p{i}"} for i in range(count // 2)]
        r = await api.post("/batch-notifications/", headers=headers, json={"notifications": items})
        assert r.status_code == 202, r.text
        batch = r.json()

        deadline = time.monotonic() + 60
        while True:
            status: dict[str, Any] = (
                await api.get(f"/batch-status/{batch['batch_id']}", headers=headers)
            ).json()
            if status["status"] == "done":
                break
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.3)
    assert status["counts"]["delivered"] == count, status

    # Every item exactly once, on each device.
    for hook in hooks:
        received = sorted(json.loads(b)["data"]["notification_id"] for b in hook.received)
        assert received == sorted(batch["notification_ids"]) and not hook.duplicate_ids
    arrivals = sorted(t for hook in hooks for t in webhook_receiver.arrivals[hook.name])
    assert len(arrivals) == count
    # At most PACE a second, loosely (scheduling jitter can bunch a few): no 1 s window holds
    # more than 1.5 x PACE, and the whole batch is spread over about (count - 1) / PACE s.
    busiest = max(sum(1 for t in arrivals if start <= t < start + 1.0) for start in arrivals)
    print(f"{count} deliveries over {arrivals[-1] - arrivals[0]:.2f} s; busiest 1 s window: {busiest}")
    assert busiest <= PACE * 1.5, busiest
    assert arrivals[-1] - arrivals[0] >= (count - 1) / PACE * 0.8, arrivals[-1] - arrivals[0]
