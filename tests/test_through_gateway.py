"""The seed's scraping and notification examples through the gateway, across every service.

Real processes: gateway, task-service (status), scraping-service and notification-service
with their workers. Third parties are local servers speaking their protocol: a web site, an
OpenAI-compatible API (reached by the real `openai` client) and a webhook receiver.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import testkit
from testkit import Stack

ROOT = Path(__file__).resolve().parents[1]
for fakes_dir in ("scraping-service/tests", "notification-service/tests"):
    sys.path.insert(0, str(ROOT / fakes_dir))

from notify_fakes import FakeWebhookReceiver  # noqa: E402
from scrape_fakes import E2E_KEY, FakeOpenAI, PageServer  # noqa: E402

P = "/smart_application/tasks"


@pytest.fixture(scope="module")
async def third_parties() -> AsyncIterator[tuple[FakeOpenAI, PageServer, FakeWebhookReceiver]]:
    openai_server = await FakeOpenAI(api_key=E2E_KEY).start()
    pages = await PageServer().start()
    receiver = await FakeWebhookReceiver().start()
    try:
        yield openai_server, pages, receiver
    finally:
        await receiver.stop()
        await pages.stop()
        await openai_server.stop()


@pytest.fixture(scope="module")
def platform(infra: Path, task_stack: Stack, third_parties) -> Iterator[Stack]:
    openai_server, pages, receiver = third_parties
    vhost = os.environ["TEST_SESSION_VHOST"] + "_gw"  # no other session worker takes these tasks
    testkit.ensure_vhost(vhost)
    receiver_port = receiver.base_url.rsplit(":", 1)[1]
    env = {
        **os.environ,
        "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        "OPENAI_BASE_URL": openai_server.base_url,
        "OUTBOUND_ALLOWLIST": f"127.0.0.1:{pages.port},127.0.0.1:{receiver_port}",
        "SCRAPE_HOST_RATE": "100",
        "SCRAPE_HOST_BURST": "50",
    }
    env.pop("OPENAI_API_KEY", None)
    stack = Stack(env, infra)
    try:
        scraping = stack.api("scraping_service", "scraping")
        notifications = stack.api("notification_service", "notifications")
        stack.worker("scraping_service.worker", "scraping", concurrency=2)
        stack.worker("notification_service.worker", "notifications", concurrency=2)
        stack.api(
            "gateway",
            "gateway",
            {
                "TASK_SERVICE_URL": task_stack.urls["task"],
                "SCRAPING_SERVICE_URL": scraping,
                "NOTIFICATION_SERVICE_URL": notifications,
            },
        )
        yield stack
    finally:
        stack.stop()
        testkit.delete_vhost(vhost)


@pytest.fixture
async def gw(platform: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.urls["gateway"], timeout=30) as client:
        yield client


async def settle(gw: httpx.AsyncClient, task_id: str, headers: dict[str, str]) -> dict[str, Any]:
    for _ in range(400):
        r = await gw.get(f"{P}/task-status/{task_id}", headers=headers)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["status"] in {"SUCCESS", "FAILURE", "REVOKED"}:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish: {body}")


async def test_seed_scraping_example_through_gateway(gw, third_parties, auth) -> None:
    _, pages, _ = third_parties
    h = auth("user123", "tasks scrape")
    r = await gw.post(
        f"{P}/background-scraping/",
        json={"url": f"{pages.base}/article", "openai_key": E2E_KEY, "model": "gpt-4o"},
        headers=h,
    )
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["queue"] == "scraping" and accepted["status"] == "PENDING"
    done = await settle(gw, accepted["task_id"], h)
    assert done["status"] == "SUCCESS", done
    result = done["result"]
    for field in (
        "url",
        "final_url",
        "status_code",
        "title",
        "markdown",
        "model",
        "usage",
        "fetched_at",
        "from_cache",
    ):
        assert field in result, field
    assert result["summary"] and result["status_code"] == 200 and result["model"] == "gpt-4o"
    assert result["usage"]["prompt_tokens"] > 0
    assert E2E_KEY not in json.dumps(done)
    progress = (await gw.get(f"{P}/task-progress/{accepted['task_id']}", headers=h)).json()
    assert progress["status"] == "SUCCESS" and progress["percent"] == 100.0
    # the scope is checked at the door
    r = await gw.post(
        f"{P}/background-scraping/", json={"url": f"{pages.base}/article"}, headers=auth("user123", "tasks")
    )
    assert r.status_code == 403


async def test_seed_notification_example_through_gateway(gw, third_parties, auth) -> None:
    _, _, receiver = third_parties
    h = auth("user123", "tasks")
    hook = receiver.new_hook()
    r = await gw.post(f"{P}/devices/", json={"channel": "webhook", "url": hook.url}, headers=h)
    assert r.status_code == 201, r.text
    hook.secret = r.json()["secret"]
    r = await gw.post(
        f"{P}/send-notification/",
        json={
            "user_id": "user123",
            "title": "Task Completed",
            "message": "Your background task has finished",
            "data": {"task_id": "abc123"},
        },
        headers=h,
    )
    assert r.status_code == 202, r.text
    sent = r.json()
    assert sent["status"] == "queued"
    done = await settle(gw, sent["task_id"], h)
    assert done["status"] == "SUCCESS", done
    for _ in range(200):
        status = (await gw.get(f"{P}/notification-status/{sent['notification_id']}", headers=h)).json()
        if status["status"] == "delivered":
            break
        await asyncio.sleep(0.05)
    assert status["status"] == "delivered", status
    (body,) = hook.received
    assert receiver.rejections == []
    event = json.loads(body)
    assert event["data"]["title"] == "Task Completed"
    inbox = (await gw.get(f"{P}/inbox/", headers=h)).json()
    assert any(item.get("notification_id") == sent["notification_id"] for item in inbox["items"])
    # another user's notification is not there to read
    r = await gw.get(f"{P}/notification-status/{sent['notification_id']}", headers=auth("mallory", "tasks"))
    assert r.status_code == 404


async def test_notification_preferences_and_cancel_through_gateway(gw, auth) -> None:
    h = auth("gw-prefs-user", "tasks")  # no notify scope: your own preferences and sends
    prefs = {
        "channels": {"webpush": True, "webhook": False},
        "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Paris"},
    }
    r = await gw.put(f"{P}/notification-preferences", json=prefs, headers=h)
    assert r.status_code == 200 and r.json() == prefs, r.text
    assert (await gw.get(f"{P}/notification-preferences", headers=h)).json() == prefs
    other = (await gw.get(f"{P}/notification-preferences", headers=auth("gw-prefs-other", "tasks"))).json()
    assert other["quiet_hours"] is None
    send_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = await gw.post(
        f"{P}/send-notification/",
        json={"user_id": "gw-prefs-user", "title": "later", "send_at": send_at},
        headers=h,
    )
    assert r.status_code == 202 and r.json()["status"] == "scheduled", r.text
    nid = r.json()["notification_id"]
    r = await gw.post(f"{P}/notification-cancel/{nid}", headers=auth("mallory", "tasks notify:send"))
    assert r.status_code == 404
    r = await gw.post(f"{P}/notification-cancel/{nid}", headers=h)
    assert r.status_code == 202 and r.json()["status"] == "cancelled", r.text
    assert (await gw.get(f"{P}/notification-status/{nid}", headers=h)).json()["status"] == "cancelled"


async def test_cache_etags_listing_and_batch_through_gateway(gw, auth) -> None:
    h = auth("gw-cache-user", "cache")
    r = await gw.put(
        f"{P}/cache/doc:1", json={"value": {"v": 1}, "ttl": 300}, headers={**h, "If-None-Match": "*"}
    )
    assert r.status_code == 200, r.text
    tag = r.headers["ETag"]
    r = await gw.get(f"{P}/cache/doc:1", headers=h)
    assert r.headers["ETag"] == tag and 290 <= r.json()["ttl"] <= 300
    assert (
        await gw.put(f"{P}/cache/doc:1", json={"value": 2}, headers={**h, "If-Match": tag})
    ).status_code == 200
    r = await gw.put(f"{P}/cache/doc:1", json={"value": 3}, headers={**h, "If-Match": tag})
    assert r.status_code == 412 and r.json()["error"]["code"] == "precondition_failed"
    assert r.json()["error"]["request_id"] == r.headers["X-Request-ID"]
    r = await gw.post(
        f"{P}/cache-batch", json={"set": {"doc:2": {"value": "two"}}, "get": ["doc:1"]}, headers=h
    )
    assert r.status_code == 200 and r.json() == {"values": {"doc:1": 2}, "set": 1, "deleted": 0}, r.text
    for path in (f"{P}/cache", f"{P}/cache/"):  # both answered directly, no redirect
        r = await gw.get(path, params={"prefix": "doc:", "limit": 1}, headers=h)
        assert r.status_code == 200 and [i["key"] for i in r.json()["items"]] == ["doc:1"], r.text
    r = await gw.get(f"{P}/cache", params={"prefix": "doc:", "cursor": r.json()["next_cursor"]}, headers=h)
    assert [i["key"] for i in r.json()["items"]] == ["doc:2"] and r.json()["next_cursor"] is None
    # The gateway checks the cache scope on the new paths before proxying.
    no_cache = auth("gw-cache-user", "tasks")
    for method, path in (("GET", f"{P}/cache"), ("POST", f"{P}/cache-batch/")):
        r = await gw.request(method, path, json={} if method == "POST" else None, headers=no_cache)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (path, r.text)


async def test_schedules_crud_and_scope_through_gateway(gw, auth) -> None:
    h = auth("gw-sched-user", "tasks")
    body = {
        "name": "gw",
        "every_seconds": 3600,
        "target": {"path": "background-task", "body": {"task_type": "noop"}},
    }
    r = await gw.post(f"{P}/schedules", json=body, headers=auth("gw-sched-user", "cache"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text  # the gateway's check
    r = await gw.post(f"{P}/schedules/", json=body, headers=h)
    assert r.status_code == 201, r.text
    sid = r.json()["schedule_id"]
    assert r.json()["next_run_at"] and r.json()["runs"] == 0
    r = await gw.patch(f"{P}/schedules/{sid}", json={"paused": True}, headers=h)
    assert r.status_code == 200 and r.json()["next_run_at"] is None, r.text
    assert (await gw.get(f"{P}/schedules/{sid}", headers=auth("gw-sched-other", "tasks"))).status_code == 404
    assert (await gw.get(f"{P}/schedules", headers=h)).json()["count"] == 1
    assert (await gw.delete(f"{P}/schedules/{sid}", headers=h)).status_code == 204
    assert (await gw.get(f"{P}/schedules/{sid}", headers=h)).status_code == 404


async def test_replay_endpoints_through_gateway_need_the_tasks_scope(gw, auth) -> None:
    h = auth("gw-replayer", "tasks")
    r = await gw.post(
        f"{P}/background-task/", json={"task_type": "fail", "data": {"message": "x"}}, headers=h
    )
    assert r.status_code == 202, r.text
    tid = r.json()["task_id"]
    assert (await settle(gw, tid, h))["status"] == "FAILURE"
    no_scope = auth("gw-replayer", "scrape")
    r = await gw.post(f"{P}/task-retry/{tid}", headers=no_scope)
    assert r.status_code == 403, r.text
    r = await gw.post(f"{P}/task-retry/{tid}", headers=h)
    assert r.status_code == 202 and r.json()["retry_of"] == tid, r.text
    r = await gw.post(f"{P}/tasks/retry", json={"status": "FAILURE", "task_type": "fail"}, headers=h)
    assert r.status_code == 202, r.text
    assert r.json()["count"] >= 1
