"""Replaying a failed scrape (POST /task-retry/{id}, POST /tasks/retry): task-service hands it to
scraping-service's internal replay endpoint, which re-reads the record and submits it as a new
scrape. Real processes: task-service's API, scraping-service's API and worker, Redis and RabbitMQ
(a vhost and a Redis database of this module's own, so no other scraping worker takes its
tasks), the local page server and the local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis as sync_redis
from kombu import Connection
from scrape_fakes import FakeOpenAI, PageServer
from test_scrape_e2e import _rabbitmqctl, _redis_dump

import testkit
from shared import SERVICE_TOKEN_HEADER, BaseServiceSettings, mint_service_token
from testkit import Stack

P = "/smart_application/tasks"
REPLAY = "/internal/replay/background-scraping/"
USER_KEY = f"sk-user-REPLAY-{uuid.uuid4().hex}"
SERVER_KEY = f"sk-server-REPLAY-{uuid.uuid4().hex}"
Auth = Callable[..., dict[str, str]]


@pytest.fixture(scope="module")
async def replay_openai() -> AsyncIterator[FakeOpenAI]:
    server = await FakeOpenAI(api_key=USER_KEY).start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
def replay_stack(infra: Path, replay_openai: FakeOpenAI, e2e_pages: PageServer) -> Iterator[Stack]:
    """task-service's API pointed at scraping-service's API, a scraping worker and a gateway in
    front; the server has a key of its own with a budget of one token a day per user."""
    vhost = f"{os.environ['TEST_SESSION_VHOST']}_replay"
    testkit.ensure_vhost(vhost)
    db = testkit.claim_redis_db()
    env = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:6379/{db}",
        "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        "TEST_REPLAY_VHOST": vhost,
        "OPENAI_BASE_URL": replay_openai.base_url,
        "OPENAI_API_KEY": SERVER_KEY,
        "OPENAI_SERVER_KEY_DAILY_TOKENS_PER_USER": "1",
        "OUTBOUND_ALLOWLIST": f"127.0.0.1:{e2e_pages.port}",
        "OPENAI_MAX_ATTEMPTS": "1",
        "SCRAPE_TASK_MAX_RETRIES": "0",
        "SCRAPE_TIMEOUT_SECONDS": "5",
    }
    stack = Stack(env, infra)
    try:
        stack.api("scraping_service", "scraping")
        stack.worker("scraping_service.worker", "scraping", concurrency=2)
        stack.api("task_service", "task", {"SCRAPING_SERVICE_URL": stack.urls["scraping"]})
        stack.api(
            "gateway",
            "gateway",
            {"TASK_SERVICE_URL": stack.urls["task"], "SCRAPING_SERVICE_URL": stack.urls["scraping"]},
        )
        yield stack
    finally:
        stack.stop()
        testkit.release_redis_db(db)
        testkit.delete_vhost(vhost)


@pytest.fixture
async def task_api(replay_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=replay_stack.urls["task"], timeout=30) as client:
        yield client


async def scrape(stack: Stack, h: dict[str, str], **body: Any) -> str:
    async with httpx.AsyncClient(base_url=stack.urls["scraping"], timeout=30) as client:
        r = await client.post(f"{P}/background-scraping/", json=body, headers=h)
    assert r.status_code == 202, r.text
    task_id: str = r.json()["task_id"]
    return task_id


async def finished(client: httpx.AsyncClient, task_id: str, h: dict[str, str]) -> dict[str, Any]:
    for _ in range(800):
        r = await client.get(f"{P}/task-status/{task_id}", headers=h)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["status"] in {"SUCCESS", "FAILURE", "REVOKED", "EXPIRED"}:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{task_id} did not finish")


async def failed_scrape(
    stack: Stack,
    api: httpx.AsyncClient,
    model: FakeOpenAI,
    h: dict[str, str],
    *,
    accepted_key: str,
    url: str,
    **body: Any,
) -> str:
    """A scrape that fails for good: the model server accepts only `accepted_key` and refuses
    the first call with 401 (not retried), so the task ends FAILURE with its inputs kept."""
    model.api_key = accepted_key
    model.fail(401, "key revoked for a moment", times=1)
    task_id = await scrape(stack, h, url=url, **body)
    assert (await finished(api, task_id, h))["status"] == "FAILURE"
    return task_id


def record(stack: Stack, task_id: str) -> dict[bytes, bytes]:
    with sync_redis.Redis.from_url(stack.env["REDIS_URL"]) as client:
        return client.hgetall(f"t:rec:{task_id}")  # type: ignore[return-value]


async def test_a_scrape_on_the_users_key_is_replayed_only_with_the_key_which_is_never_kept(
    replay_stack: Stack,
    task_api: httpx.AsyncClient,
    replay_openai: FakeOpenAI,
    e2e_pages: PageServer,
    auth: Auth,
) -> None:
    h = auth("rita", "tasks scrape")
    replay_openai.api_key = USER_KEY
    replay_openai.fail(401, "key revoked for a moment", times=1)
    url = f"{e2e_pages.base}/page/replay-{uuid.uuid4().hex[:6]}"
    original = await scrape(replay_stack, h, url=url, openai_key=USER_KEY, prompt="Summarise.")
    failed = await finished(task_api, original, h)
    assert failed["status"] == "FAILURE" and failed["attempts"] == 1, failed

    r = await task_api.post(f"{P}/task-retry/{original}", headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "key_required", r.text
    r = await task_api.post(f"{P}/task-retry/{original}", json={"openai_key": ""}, headers=h)
    assert r.status_code == 422, r.text

    vhost = replay_stack.env["TEST_REPLAY_VHOST"]
    trace = f"replay-trace-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("trace_on", "-p", vhost)
    conn = Connection(replay_stack.env["BROKER_URL"])
    channel = conn.channel()
    try:
        channel.queue_declare(trace, durable=False, auto_delete=False)
        channel.queue_bind(trace, "amq.rabbitmq.trace", "#")
        r = await task_api.post(f"{P}/task-retry/{original}", json={"openai_key": USER_KEY}, headers=h)
        assert r.status_code == 202, r.text
        accepted = r.json()
        assert accepted["retry_of"] == original and accepted["task_id"] != original
        assert accepted["queue"] == "scraping" and accepted["task_type"] == "scraping"
        done = await finished(task_api, accepted["task_id"], h)
        assert done["status"] == "SUCCESS", done
        assert done["retry_of"] == original
        # The worker asked the model with the key the user sent again.
        assert replay_openai.requests[-1]["_auth"] == f"Bearer {USER_KEY}"
        await asyncio.sleep(0.5)  # let the trace of the delivery land
        captured: list[bytes] = []
        while (msg := channel.basic_get(trace, no_ack=True)) is not None:
            captured.append(bytes(msg.body))
            captured.append(repr(msg.properties).encode())
    finally:
        try:
            channel.queue_delete(trace)
        finally:
            channel.close()
            conn.release()
            _rabbitmqctl("trace_off", "-p", vhost)

    broker = b"\n".join(captured)
    assert accepted["task_id"].encode() in broker and b"kref_" in broker  # the capture works
    assert USER_KEY.encode() not in broker and USER_KEY[-16:].encode() not in broker
    kept = record(replay_stack, accepted["task_id"])
    assert kept[b"retry_of"] == original.encode()
    inputs = orjson.loads(kept[b"inputs"])
    assert inputs["needs_key"] is True and inputs["kwargs"]["url"] == url
    stored = _redis_dump(replay_stack.env["REDIS_URL"])
    assert stored
    assert not [v for v in stored if USER_KEY.encode() in v or USER_KEY[-16:].encode() in v]
    refs = set(re.findall(rb"kref_[A-Za-z0-9_-]{32,64}", broker))
    assert refs and not [ref for ref in refs if b"scrape:keyref:" + ref in stored]
    logs = "".join(p.log_text() for p in replay_stack.procs)
    assert accepted["task_id"] in logs and USER_KEY not in logs

    # A task that succeeded is not replayed.
    r = await task_api.post(f"{P}/task-retry/{accepted['task_id']}", json={"openai_key": USER_KEY}, headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "task_succeeded", r.text


async def test_a_scrape_on_the_servers_key_replays_without_a_key_within_the_daily_budget(
    replay_stack: Stack,
    task_api: httpx.AsyncClient,
    replay_openai: FakeOpenAI,
    e2e_pages: PageServer,
    auth: Auth,
) -> None:
    h = auth("sam", "tasks scrape")
    original = await failed_scrape(
        replay_stack,
        task_api,
        replay_openai,
        h,
        accepted_key=SERVER_KEY,
        url=f"{e2e_pages.base}/page/server-{uuid.uuid4().hex[:6]}",
    )

    # Through the gateway, as a client calls it.
    async with httpx.AsyncClient(base_url=replay_stack.urls["gateway"], timeout=30) as gateway:
        r = await gateway.post(f"{P}/task-retry/{original}", headers=h)
    assert r.status_code == 202, r.text
    replayed = r.json()
    assert replayed["retry_of"] == original
    done = await finished(task_api, replayed["task_id"], h)
    assert done["status"] == "SUCCESS" and done["retry_of"] == original, done
    assert replay_openai.requests[-1]["_auth"] == f"Bearer {SERVER_KEY}"

    # That run spent more than today's one token on the server's key: the next replay is 429.
    async with httpx.AsyncClient(base_url=replay_stack.urls["gateway"], timeout=30) as gateway:
        r = await gateway.post(f"{P}/task-retry/{original}", headers=h)
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "model_budget_exceeded"
    assert 0 < int(r.headers["Retry-After"]) <= 86400


async def test_a_scrape_with_request_headers_needs_them_again(
    replay_stack: Stack,
    task_api: httpx.AsyncClient,
    replay_openai: FakeOpenAI,
    e2e_pages: PageServer,
    auth: Auth,
) -> None:
    h = auth("hugo", "tasks scrape")
    replay_openai.api_key = USER_KEY
    cookie = f"session={uuid.uuid4().hex}"
    url = f"{e2e_pages.base}/members?replay={uuid.uuid4().hex[:6]}"
    # Not yet a member: the page answers 401 and the scrape fails.
    original = await scrape(replay_stack, h, url=url, openai_key=USER_KEY, headers={"Cookie": cookie})
    failed = await finished(task_api, original, h)
    assert failed["status"] == "FAILURE" and "401" in failed["error"]["message"], failed
    inputs = orjson.loads(record(replay_stack, original)[b"inputs"])
    assert inputs["needs_headers"] is True and "headers_ref" not in inputs["kwargs"]

    r = await task_api.post(f"{P}/task-retry/{original}", json={"openai_key": USER_KEY}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "headers_required", r.text
    # Headers are checked as a new scrape's.
    r = await task_api.post(
        f"{P}/task-retry/{original}", json={"openai_key": USER_KEY, "headers": {"Host": "x"}}, headers=h
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_header", r.text

    e2e_pages.member_cookies.add(cookie)
    r = await task_api.post(
        f"{P}/task-retry/{original}", json={"openai_key": USER_KEY, "headers": {"Cookie": cookie}}, headers=h
    )
    assert r.status_code == 202, r.text
    done = await finished(task_api, r.json()["task_id"], h)
    assert done["status"] == "SUCCESS", done
    assert "Members-only appendix" in done["result"]["markdown"]
    stored = _redis_dump(replay_stack.env["REDIS_URL"])
    assert not [v for v in stored if cookie.encode() in v]


async def test_bulk_replay_restarts_the_scrapes_that_need_no_secret(
    replay_stack: Stack,
    task_api: httpx.AsyncClient,
    replay_openai: FakeOpenAI,
    e2e_pages: PageServer,
    auth: Auth,
) -> None:
    h = auth(f"bulk-{uuid.uuid4().hex[:6]}", "tasks scrape")
    on_server = await failed_scrape(
        replay_stack,
        task_api,
        replay_openai,
        h,
        accepted_key=SERVER_KEY,
        url=f"{e2e_pages.base}/page/bulk-s-{uuid.uuid4().hex[:6]}",
    )
    # The user's key is not the one the model server accepts now: this one fails too.
    on_user = await scrape(
        replay_stack, h, url=f"{e2e_pages.base}/page/bulk-u-{uuid.uuid4().hex[:6]}", openai_key=USER_KEY
    )
    assert (await finished(task_api, on_user, h))["status"] == "FAILURE"

    r = await task_api.post(f"{P}/tasks/retry", json={"task_type": "scraping"}, headers=h)
    assert r.status_code == 202, r.text
    bulk = r.json()
    assert bulk["count"] == 1, bulk
    done = await finished(task_api, bulk["task_ids"][0], h)
    assert done["retry_of"] == on_server and done["status"] == "SUCCESS", done


async def test_only_a_replay_credential_of_the_owner_replays(
    replay_stack: Stack,
    task_api: httpx.AsyncClient,
    replay_openai: FakeOpenAI,
    e2e_pages: PageServer,
    auth: Auth,
) -> None:
    h = auth("olga", "tasks scrape")
    original = await failed_scrape(
        replay_stack,
        task_api,
        replay_openai,
        h,
        accepted_key=USER_KEY,
        url=f"{e2e_pages.base}/page/own-{uuid.uuid4().hex[:6]}",
        openai_key=USER_KEY,
    )

    # Another user's task is as unknown as a missing one, through task-service...
    r = await task_api.post(
        f"{P}/task-retry/{original}", json={"openai_key": USER_KEY}, headers=auth("mallory", "tasks scrape")
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "task_not_found", r.text
    # ...and a scrape's replay needs the scrape scope.
    r = await task_api.post(
        f"{P}/task-retry/{original}", json={"openai_key": USER_KEY}, headers=auth("olga", "tasks")
    )
    assert r.status_code == 403, r.text

    settings = BaseServiceSettings()
    url = f"{replay_stack.urls['scraping']}{REPLAY}{original}"
    body = {"openai_key": USER_KEY}

    def cred(sub: str, svc: str, scopes: tuple[str, ...] = ("scrape",)) -> dict[str, str]:
        return {SERVICE_TOKEN_HEADER: mint_service_token(settings, sub, scopes, svc)}

    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(url, json=body, headers=cred("olga", "scheduler"))
        assert r.status_code == 401, r.text  # a scheduler's credential cannot replay
        r = await client.post(url, json=body)
        assert r.status_code == 401, r.text
        r = await client.post(url, json=body, headers=cred("mallory", "replay"))
        assert r.status_code == 404 and r.json()["error"]["code"] == "task_not_found", r.text
        r = await client.post(url, json=body, headers=cred("olga", "replay", ()))
        assert r.status_code == 403, r.text
        r = await client.post(url, json={}, headers=cred("olga", "replay"))
        assert r.status_code == 422 and r.json()["error"]["code"] == "key_required", r.text
        # Nor can a replay's credential submit a schedule's run.
        r = await client.post(
            f"{replay_stack.urls['scraping']}/internal/scheduler/background-scraping/",
            json={"url": f"{e2e_pages.base}/article"},
            headers=cred("olga", "replay"),
        )
        assert r.status_code == 401, r.text
        # The gateway's public prefix has no such route.
        r = await client.post(f"{replay_stack.urls['scraping']}{P}{REPLAY}{original}", json=body, headers=h)
        assert r.status_code == 404, r.text


async def test_a_scrape_replay_while_scraping_service_is_away_is_503_with_retry_after(
    replay_stack: Stack,
    task_api: httpx.AsyncClient,
    replay_openai: FakeOpenAI,
    e2e_pages: PageServer,
    auth: Auth,
) -> None:
    h = auth("ursula", "tasks scrape")
    original = await failed_scrape(
        replay_stack,
        task_api,
        replay_openai,
        h,
        accepted_key=SERVER_KEY,
        url=f"{e2e_pages.base}/page/away-{uuid.uuid4().hex[:6]}",
    )
    nobody = f"http://127.0.0.1:{testkit.free_port()}"
    port = testkit.free_port()
    lonely = testkit.start_api(
        "task_service", port, {**replay_stack.env, "SCRAPING_SERVICE_URL": nobody}, replay_stack.log_dir
    )
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.post(f"http://127.0.0.1:{port}{P}/task-retry/{original}", headers=h)
    finally:
        lonely.stop()
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "service_unavailable" and r.headers["Retry-After"] == "5"
    # Nothing was started: a later replay still finds the task to replay.
    r = await task_api.post(f"{P}/task-retry/{original}", headers=h)
    assert r.status_code == 202 and r.json()["retry_of"] == original, r.text
