"""Schedules of background-scraping and send-notification: validated and submitted through the
target services' internal endpoints, on the real APIs, scheduler and gateway."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import redis.asyncio as aioredis

import testkit
from shared import SERVICE_TOKEN_HEADER, mint_service_token
from task_service.remote_targets import submit_remote
from task_service.scheduler import LEASE_MS
from task_service.schedules import Schedules, to_ms
from task_service.settings import TaskSettings
from testkit import Proc, Stack, sample_value

P = "/smart_application/tasks"
INTERNAL_NOTIFY = "/internal/scheduler/send-notification/"
INTERNAL_SCRAPE = "/internal/scheduler/background-scraping/validate"


@pytest.fixture(scope="module")
def targets_stack(infra) -> Iterator[Stack]:
    """scraping-service and notification-service APIs, task-service's API and scheduler pointed
    at them, and a gateway in front. No workers: a run is proven by the owner's inbox, which
    notification-service fills when it accepts a send."""
    env = {
        **os.environ,
        "OPENAI_API_KEY": "sk-test-server-key-never-called",
        "OUTBOUND_ALLOWLIST": "",
    }
    stack = Stack(env, infra)
    try:
        stack.api("scraping_service", "scraping")
        stack.api("notification_service", "notify")
        stack.env.update(
            SCRAPING_SERVICE_URL=stack.urls["scraping"], NOTIFICATION_SERVICE_URL=stack.urls["notify"]
        )
        stack.api("task_service", "task")
        stack.api(
            "gateway",
            "gateway",
            {
                "TASK_SERVICE_URL": stack.urls["task"],
                "SCRAPING_SERVICE_URL": stack.urls["scraping"],
                "NOTIFICATION_SERVICE_URL": stack.urls["notify"],
            },
        )
        yield stack
    finally:
        stack.stop()


def uniq(name: str) -> str:
    return f"{name}-{os.getpid()}-{time.monotonic_ns()}"


def schedule(path: str, body: dict[str, object], **extra: object) -> dict[str, object]:
    return {"name": "t", "target": {"path": path, "body": body}, "every_seconds": 5, **extra}


@pytest.fixture(scope="module")
def scheduler(targets_stack: Stack) -> Iterator[tuple[Proc, str]]:
    """One scheduler for the module; its metrics URL."""
    port = testkit.free_port()
    proc = Proc(
        "scheduler",
        [sys.executable, "-m", "task_service.scheduler"],
        {**targets_stack.env, "SCHEDULER_METRICS_PORT": str(port)},
        targets_stack.log_dir / f"scheduler-targets-{time.monotonic_ns()}.log",
    ).start()
    try:
        proc.wait_for_log("scheduler started", timeout=30)
        yield proc, f"http://127.0.0.1:{port}/metrics"
    finally:
        proc.stop()


async def test_send_notification_schedule_lands_in_the_owners_inbox_each_tick(
    targets_stack: Stack, scheduler: tuple[Proc, str], auth
) -> None:
    owner = uniq("sched-notify")
    h = auth(owner, "tasks")
    title = uniq("tick")
    async with httpx.AsyncClient(base_url=targets_stack.urls["gateway"] + P, timeout=30) as gw:
        r = await gw.post(
            "/schedules/",
            json=schedule("send-notification", {"user_id": owner, "title": title, "message": "hi"}),
            headers=h,
        )
        assert r.status_code == 201, r.text
        sid = r.json()["schedule_id"]
        deadline = time.time() + 14
        items: list[dict[str, object]] = []
        while time.time() < deadline:
            r = await gw.get("/inbox/", headers=h)
            assert r.status_code == 200, r.text
            items = [i for i in r.json()["items"] if i["title"] == title]
            if items:
                break
            await asyncio.sleep(0.3)
        assert items, f"nothing in the inbox after 14 s:\n{scheduler[0].log_text()[-2000:]}"
        assert items[0]["message"] == "hi" and items[0]["sender"] == owner
        got = (await gw.get(f"/schedules/{sid}", headers=h)).json()
        assert got["runs"] >= 1 and got["last_task_id"] is not None
        assert (await gw.delete(f"/schedules/{sid}", headers=h)).status_code == 204


async def test_a_run_the_target_refuses_counts_as_a_failed_run(
    targets_stack: Stack, scheduler: tuple[Proc, str], auth
) -> None:
    """send_at is in the future when the schedule is made and past at its first run: 422 then."""
    owner = uniq("sched-fail")
    h = auth(owner, "tasks")
    metrics = scheduler[1]
    failed_before = sample_value(
        httpx.get(metrics).text, "smartapp_schedule_runs_total", {"outcome": "failed"}
    )
    send_at = datetime.fromtimestamp(time.time() + 2, UTC).isoformat()
    async with httpx.AsyncClient(base_url=targets_stack.urls["task"] + P, timeout=30) as c:
        body = {"user_id": owner, "title": "late", "send_at": send_at}
        r = await c.post("/schedules/", json=schedule("send-notification", body), headers=h)
        assert r.status_code == 201, r.text
        sid = r.json()["schedule_id"]
        deadline = time.time() + 14
        failed = failed_before
        while time.time() < deadline and failed <= failed_before:
            await asyncio.sleep(0.3)
            failed = sample_value(
                httpx.get(metrics).text, "smartapp_schedule_runs_total", {"outcome": "failed"}
            )
        assert failed >= failed_before + 1, scheduler[0].log_text()[-2000:]
        assert "invalid_send_at" in scheduler[0].log_text()
        got = (await c.get(f"/schedules/{sid}", headers=h)).json()
        assert got["runs"] >= 1
        assert (await c.delete(f"/schedules/{sid}", headers=h)).status_code == 204


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("background-scraping", {"url": "http://127.0.0.1:1/admin"}, "url_not_allowed"),
        ("background-scraping", {"url": "ftp://example.com/"}, "url_not_allowed"),
        (
            "background-scraping",
            {"url": "https://example.com/", "schema": {"type": "object", "properties": 5}},
            "invalid_schema",
        ),
        (
            "background-scraping",
            {"url": "https://example.com/", "openai_key": "sk-mine"},
            "secret_not_allowed_in_schedule",
        ),
        (
            "background-scraping",
            {"url": "https://example.com/", "headers": {"Cookie": "session=1"}},
            "secret_not_allowed_in_schedule",
        ),
        ("send-notification", {"user_id": "x"}, "validation_error"),
        ("send-notification", {"title": "t", "send_at": "2000-01-01T00:00:00Z"}, "invalid_send_at"),
    ],
)
async def test_remote_target_body_is_refused_with_the_target_services_own_422(
    targets_stack: Stack, auth, path, body, code
) -> None:
    owner = uniq("sched-bad")
    if path == "send-notification" and "title" in body:
        body = {**body, "user_id": owner}
    h = auth(owner, "tasks scrape")
    async with httpx.AsyncClient(base_url=targets_stack.urls["task"] + P, timeout=30) as c:
        r = await c.post("/schedules/", json=schedule(path, body), headers=h)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == code, r.text
        assert (await c.get("/schedules/", headers=h)).json()["count"] == 0


async def test_keyless_scrape_schedule_is_accepted_and_notifying_another_user_needs_notify_send(
    targets_stack: Stack, auth
) -> None:
    owner = uniq("sched-ok")
    async with httpx.AsyncClient(base_url=targets_stack.urls["task"] + P, timeout=30) as c:
        body = {"url": "https://example.com/", "prompt": "Summarise", "schema": {"type": "object"}}
        r = await c.post(
            "/schedules/",
            json=schedule("background-scraping", body, paused=True),
            headers=auth(owner, "tasks scrape"),
        )
        assert r.status_code == 201, r.text
        assert r.json()["target"]["body"] == body
        other = {"user_id": "someone-else", "title": "t"}
        r = await c.post(
            "/schedules/",
            json=schedule("send-notification", other, paused=True),
            headers=auth(owner, "tasks"),
        )
        assert r.status_code == 403, r.text
        r = await c.post(
            "/schedules/",
            json=schedule("send-notification", other, paused=True),
            headers=auth(owner, "tasks notify:send"),
        )
        assert r.status_code == 201, r.text


async def test_internal_endpoints_are_404_through_the_gateway_and_401_without_the_service_credential(
    targets_stack: Stack, auth, settings
) -> None:
    owner = uniq("sched-int")
    body = {"user_id": owner, "title": "t"}
    async with httpx.AsyncClient(timeout=30) as c:
        gw = targets_stack.urls["gateway"]
        for path in (INTERNAL_NOTIFY, INTERNAL_SCRAPE, f"{P}{INTERNAL_NOTIFY}", f"{P}/..{INTERNAL_NOTIFY}"):
            token = mint_service_token(settings, owner, ["notify:send"], "scheduler")
            r = await c.post(
                gw + path, json=body, headers={**auth(owner, "tasks"), SERVICE_TOKEN_HEADER: token}
            )
            assert r.status_code == 404, (path, r.status_code, r.text)

        notify = targets_stack.urls["notify"] + INTERNAL_NOTIFY
        user_jwt = auth(owner, "tasks notify:send")["Authorization"].split()[1]
        for headers in (
            {},
            auth(owner, "tasks notify:send"),  # a user's bearer token is not a service credential
            {SERVICE_TOKEN_HEADER: user_jwt},  # nor is it one in the service header
            {SERVICE_TOKEN_HEADER: mint_service_token(settings, owner, [], "someone-else")},
        ):
            r = await c.post(notify, json=body, headers=headers)
            assert r.status_code == 401, r.text
            assert r.json()["error"]["code"] == "unauthorized", r.text

        # With the credential: sent as the owner, once per Idempotency-Key.
        cred = {
            SERVICE_TOKEN_HEADER: mint_service_token(settings, owner, [], "scheduler"),
            "Idempotency-Key": "schedule:x:1",
        }
        first = await c.post(notify, json=body, headers=cred)
        again = await c.post(notify, json=body, headers=cred)
        assert first.status_code == again.status_code == 202, first.text
        assert first.json()["notification_id"] == again.json()["notification_id"]
        r = await c.get(targets_stack.urls["notify"] + f"{P}/inbox/", headers=auth(owner, "tasks"))
        assert [i["title"] for i in r.json()["items"]] == ["t"]


@pytest.mark.parametrize("sent", [False, True], ids=["died-before-the-call", "died-after-the-call"])
async def test_send_notification_run_of_a_scheduler_that_died_is_sent_once(
    targets_stack: Stack, scheduler: tuple[Proc, str], auth, sent: bool
) -> None:
    """A run claimed by a scheduler that died: the live one takes it over and calls the target
    with the run's Idempotency-Key. died-after-the-call: the dead one's call had got through, so
    the repeat answers the same task and the owner's inbox gets one notification, not two."""
    owner = uniq("sched-orphan")
    h = auth(owner, "tasks")
    title = uniq("orphan")
    body = {"user_id": owner, "title": title, "message": "once"}
    metrics = scheduler[1]
    recovered_before = sample_value(httpx.get(metrics).text, "smartapp_schedule_runs_recovered_total")
    async with (
        httpx.AsyncClient(base_url=targets_stack.urls["task"] + P, timeout=30) as c,
        aioredis.Redis.from_url(os.environ["REDIS_URL"]) as r,
    ):
        made = await c.post(
            "/schedules/", json=schedule("send-notification", body, every_seconds=3600), headers=h
        )
        assert made.status_code == 201, made.text
        sid = made.json()["schedule_id"]
        schedules = Schedules(r)
        doc = await schedules.get(sid)
        assert doc is not None and doc["next_run"] is not None
        due = doc["next_run"]
        first_id = None
        if sent:
            settings = TaskSettings(notification_service_url=targets_stack.urls["notify"])
            first_id = await submit_remote(
                "send-notification", body, owner, settings, f"schedule:{sid}:{due}"
            )
            assert first_id is not None
        claimed_ms = to_ms(time.time()) - LEASE_MS - 5_000
        run = await schedules.claim(doc, due, due + 3_600_000, str(uuid.uuid4()), claimed_ms)
        assert run is not None

        deadline = time.time() + 10
        while run.task_id in await schedules.in_flight():
            assert time.time() < deadline, scheduler[0].log_text()[-2000:]
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # two more loops: nothing more is sent
        got = (await c.get(f"/schedules/{sid}", headers=h)).json()
        assert got["runs"] == 1, got
        if sent:
            assert got["last_task_id"] == first_id, got
        assert (await c.delete(f"/schedules/{sid}", headers=h)).status_code == 204
    async with httpx.AsyncClient(base_url=targets_stack.urls["gateway"] + P, timeout=30) as gw:
        inbox = await gw.get("/inbox/", headers=h)
        assert inbox.status_code == 200, inbox.text
        items = [i for i in inbox.json()["items"] if i["title"] == title]
        assert len(items) == 1, items
        assert items[0]["message"] == "once" and items[0]["sender"] == owner
    recovered = sample_value(httpx.get(metrics).text, "smartapp_schedule_runs_recovered_total")
    assert recovered == recovered_before + 1
