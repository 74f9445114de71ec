"""The scraping service as deployed: its API and its Celery worker as real processes, real
Redis and RabbitMQ, the local page server, and the local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import redis as sync_redis
from kombu import Connection
from scrape_fakes import E2E_KEY, FakeOpenAI, PageServer

from testkit import Stack

P = "/smart_application/tasks"
Auth = Callable[..., dict[str, str]]


async def wait_done(
    stack: Stack, task_id: str, headers: dict[str, str], timeout: float = 40
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with httpx.AsyncClient(base_url=stack.urls["task"], timeout=10) as client:
        while True:
            r = await client.get(f"{P}/task-status/{task_id}", headers=headers)
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            if body["status"] in {"SUCCESS", "FAILURE", "REVOKED"}:
                return body
            assert loop.time() < deadline, f"still {body['status']} after {timeout}s"
            await asyncio.sleep(0.05)


async def submit(
    client: httpx.AsyncClient, headers: dict[str, str], path: str = "/background-scraping/", **body: Any
) -> dict[str, Any]:
    r = await client.post(P + path, json=body, headers=headers)
    assert r.status_code == 202, r.text
    accepted: dict[str, Any] = r.json()
    assert accepted["status"] == "PENDING" and accepted["queue"] == "scraping"
    return accepted


async def test_seed_example_summary(
    scraping_client: httpx.AsyncClient,
    scraping_stack: Stack,
    e2e_pages: PageServer,
    e2e_openai: FakeOpenAI,
    auth: Auth,
) -> None:
    h = auth("alice", "tasks scrape")
    url = f"{e2e_pages.base}/article?seed={uuid.uuid4().hex}"
    before = len(e2e_openai.requests)
    accepted = await submit(scraping_client, h, url=url, openai_key=E2E_KEY, model="gpt-4o")
    assert accepted["task_type"] == "scraping"
    done = await wait_done(scraping_stack, accepted["task_id"], h)
    assert done["status"] == "SUCCESS", done
    result = done["result"]
    assert result["url"] == url and result["final_url"] == url
    assert result["status_code"] == 200
    assert result["title"] == "How Tidal Power Plants Work | Example News"
    assert "## Barrages and lagoons" in result["markdown"]
    assert "BUY CHEAP WIDGETS" not in result["markdown"]
    assert result["summary"] == "Summary of: # How Tidal Power Plants Work"
    assert result["model"] == "gpt-4o"
    assert result["usage"]["prompt_tokens"] > 0 and result["usage"]["completion_tokens"] > 0
    assert result["from_cache"] is False and result["fetched_at"].endswith("Z")
    assert len(e2e_openai.requests) == before + 1
    async with httpx.AsyncClient(base_url=scraping_stack.urls["task"]) as client:
        progress = (await client.get(f"{P}/task-progress/{accepted['task_id']}", headers=h)).json()
    assert progress["percent"] == 100.0 and progress["message"] == "done"

    # The repeat is answered from the caches (no trailing slash this time).
    again = await submit(
        scraping_client, h, path="/background-scraping", url=url, openai_key=E2E_KEY, model="gpt-4o"
    )
    done2 = await wait_done(scraping_stack, again["task_id"], h)
    assert done2["result"]["from_cache"] is True
    assert done2["result"]["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "estimated_cost_usd": 0.0}
    assert len(e2e_openai.requests) == before + 1


async def test_schema_extraction(
    scraping_client: httpx.AsyncClient,
    scraping_stack: Stack,
    e2e_pages: PageServer,
    e2e_openai: FakeOpenAI,
    auth: Auth,
) -> None:
    h = auth("bob", "tasks scrape")
    e2e_openai.schema_answer = lambda _: {"plants": ["La Rance", "Sihwa Lake", "La Rance"], "author": None}
    schema = {
        "type": "object",
        "properties": {
            "plants": {"type": "array", "items": {"type": "string"}},
            "author": {"type": "string"},
        },
        "required": ["plants"],
    }
    accepted = await submit(
        scraping_client,
        h,
        url=f"{e2e_pages.base}/article",
        openai_key=E2E_KEY,
        model="gpt-4o-mini",
        prompt="Which tidal plants are named?",
        schema=schema,
    )
    done = await wait_done(scraping_stack, accepted["task_id"], h)
    assert done["status"] == "SUCCESS", done
    assert done["result"]["extraction"] == {"plants": ["La Rance", "Sihwa Lake"]}
    assert "summary" not in done["result"]
    sent = e2e_openai.requests[-1]
    assert sent["model"] == "gpt-4o-mini"
    assert sent["response_format"]["json_schema"]["strict"] is True


async def test_rejected_key_and_bot_challenge_fail_with_reasons(
    scraping_client: httpx.AsyncClient,
    scraping_stack: Stack,
    e2e_pages: PageServer,
    e2e_openai: FakeOpenAI,
    auth: Auth,
) -> None:
    h = auth("carol", "tasks scrape")
    wrong = f"sk-wrong-{uuid.uuid4().hex}"
    before = len(e2e_openai.requests)
    accepted = await submit(
        scraping_client, h, url=f"{e2e_pages.base}/article?k={wrong[-6:]}", openai_key=wrong
    )
    done = await wait_done(scraping_stack, accepted["task_id"], h)
    assert done["status"] == "FAILURE"
    assert "401" in done["error"]["message"] and "openai_key" in done["error"]["message"]
    assert wrong not in orjson.dumps(done).decode()
    assert len(e2e_openai.requests) == before + 1  # never retried

    challenge = await submit(scraping_client, h, url=f"{e2e_pages.base}/challenge200", openai_key=E2E_KEY)
    done = await wait_done(scraping_stack, challenge["task_id"], h)
    assert done["status"] == "FAILURE"
    assert "bot challenge" in done["error"]["message"]
    assert len(e2e_openai.requests) == before + 1  # no tokens spent

    internal = await submit(
        scraping_client,
        h,
        url=f"{e2e_pages.base}/to?u=http://127.0.0.2:{e2e_pages.port}/article",
        openai_key=E2E_KEY,
    )
    done = await wait_done(scraping_stack, internal["task_id"], h)
    assert done["status"] == "FAILURE"
    assert "redirect refused" in done["error"]["message"]


async def test_provider_outage_is_retried_per_policy_with_the_key_kept_but_never_among_inputs(
    scraping_client: httpx.AsyncClient,
    scraping_stack: Stack,
    e2e_pages: PageServer,
    e2e_openai: FakeOpenAI,
    auth: Auth,
) -> None:
    h = auth("frank", "tasks scrape")
    # Two 503s exhaust the in-process attempts (OPENAI_MAX_ATTEMPTS=2); Retry-After: 1 then
    # puts the task back to wait (the default policy), and the next attempt must still find the
    # encrypted key.
    e2e_openai.fail(503, "overloaded", retry_after="1", times=2)
    before = len(e2e_openai.requests)
    accepted = await submit(
        scraping_client, h, url=f"{e2e_pages.base}/page/retry-{uuid.uuid4().hex[:6]}", openai_key=E2E_KEY
    )
    done = await wait_done(scraping_stack, accepted["task_id"], h)
    assert done["status"] == "SUCCESS", done
    assert len(e2e_openai.requests) == before + 3
    record = sync_redis.Redis.from_url(os.environ["REDIS_URL"]).hgetall(f"t:rec:{accepted['task_id']}")
    assert record[b"attempts"] == b"2"
    # Kept for a replay: the inputs, never the key (nor its sealed reference).
    inputs = orjson.loads(record[b"inputs"])
    assert inputs["needs_key"] is True and "key_ref" not in inputs["kwargs"]
    assert E2E_KEY.encode() not in b"".join(record.values())


async def test_replay_of_a_scrape_with_the_users_own_key_needs_the_key_again(
    scraping_client: httpx.AsyncClient,
    scraping_stack: Stack,
    e2e_pages: PageServer,
    e2e_openai: FakeOpenAI,
    auth: Auth,
) -> None:
    h = auth("grace", "tasks scrape")
    e2e_openai.fail(401, "bad key", times=1)
    accepted = await submit(
        scraping_client, h, url=f"{e2e_pages.base}/page/key-{uuid.uuid4().hex[:6]}", openai_key=E2E_KEY
    )
    done = await wait_done(scraping_stack, accepted["task_id"], h)
    assert done["status"] == "FAILURE" and done["attempts"] == 1, done
    async with httpx.AsyncClient(base_url=scraping_stack.urls["task"], timeout=10) as client:
        r = await client.post(f"{P}/task-retry/{accepted['task_id']}", headers=h)
        assert r.status_code == 422 and r.json()["error"]["code"] == "key_required", r.text


SSRF_URLS = [
    "http://127.0.0.1/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://0.0.0.0/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://localhost/",
    "ftp://example.com/",
    "file:///etc/passwd",
    "http://user:pw@example.com/",
    "javascript:alert(1)",
    "http://" + "a" * 2100 + ".com/",
]


@pytest.mark.parametrize("url", SSRF_URLS)
async def test_forbidden_urls_are_422(scraping_client: httpx.AsyncClient, auth: Auth, url: str) -> None:
    r = await scraping_client.post(
        f"{P}/background-scraping/", json={"url": url, "openai_key": E2E_KEY}, headers=auth()
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ({"model": "gpt 4o; rm -rf"}, "validation_error", "model"),
        ({"model": ""}, "validation_error", "model"),
        ({"prompt": "   "}, "invalid_prompt", "prompt"),
        ({"prompt": "x" * 5000}, "validation_error", "prompt"),
        ({"schema": {"type": "objekt"}}, "invalid_schema", "schema"),
        ({"schema": {"type": "object", "properties": {"a": {"type": 3}}}}, "invalid_schema", "schema"),
        ({"schema": "not a schema"}, "validation_error", "schema"),
        ({"max_age": -1}, "validation_error", "max_age"),
        ({"max_age": 10**9}, "validation_error", "max_age"),
        ({"openai_key": None}, "openai_key_required", "OPENAI_API_KEY"),
        ({"surprise": 1}, "validation_error", "surprise"),
        ({"run_timeout_seconds": 100000}, "timeout_too_long", "run_timeout_seconds may be at most"),
        ({"queue_timeout_seconds": 100000}, "timeout_too_long", "queue_timeout_seconds may be at most"),
    ],
)
async def test_invalid_requests_are_422_with_a_sentence(
    scraping_client: httpx.AsyncClient,
    e2e_pages: PageServer,
    auth: Auth,
    body: dict[str, Any],
    code: str,
    needle: str,
) -> None:
    payload = {"url": f"{e2e_pages.base}/article", "openai_key": E2E_KEY, **body}
    if payload.get("openai_key") is None:
        payload.pop("openai_key")
    r = await scraping_client.post(f"{P}/background-scraping/", json=payload, headers=auth())
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == code and needle in err["message"], err
    assert E2E_KEY not in r.text


async def test_auth_is_required(
    scraping_client: httpx.AsyncClient, e2e_pages: PageServer, auth: Auth
) -> None:
    body = {"url": f"{e2e_pages.base}/article", "openai_key": E2E_KEY}
    r = await scraping_client.post(f"{P}/background-scraping/", json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = await scraping_client.post(f"{P}/background-scraping/", json=body, headers=auth("dave", "tasks"))
    assert r.status_code == 403


# --- the secret scan ------------------------------------------------------------------------


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else repr(value).encode()


def _redis_dump(url: str) -> list[bytes]:
    """Every key and every value in the test database, whatever its type."""
    client = sync_redis.Redis.from_url(url)
    out: list[bytes] = []
    try:
        for key in client.scan_iter(count=500):
            out.append(_as_bytes(key))
            kind = client.type(key)
            values: Any
            if kind == b"string":
                values = [client.get(key)]
            elif kind == b"hash":
                values = [_as_bytes(k) + b"=" + _as_bytes(v) for k, v in client.hgetall(key).items()]
            elif kind == b"list":
                values = client.lrange(key, 0, -1)
            elif kind == b"set":
                values = client.smembers(key)
            elif kind == b"zset":
                values = client.zrange(key, 0, -1)
            elif kind == b"stream":
                values = client.xrange(key)
            else:
                values = []
            out.extend(_as_bytes(v) for v in values or [])
    finally:
        client.close()
    return out


async def test_the_key_is_never_readable_in_broker_redis_logs_or_results(
    scraping_client: httpx.AsyncClient,
    scraping_stack: Stack,
    e2e_pages: PageServer,
    e2e_openai: FakeOpenAI,
    auth: Auth,
) -> None:
    secret = E2E_KEY
    queue = f"scrape-trace-{uuid.uuid4().hex[:8]}"
    vhost = os.environ["TEST_SESSION_VHOST"]  # this session's own vhost (root conftest)
    _rabbitmqctl("trace_on", "-p", vhost)
    conn = Connection(os.environ["BROKER_URL"])
    channel = conn.channel()
    try:
        channel.queue_declare(queue, durable=False, auto_delete=False)
        channel.queue_bind(queue, "amq.rabbitmq.trace", "#")
        h = auth("erin", "tasks scrape")
        accepted = await submit(
            scraping_client,
            h,
            url=f"{e2e_pages.base}/article?scan={uuid.uuid4().hex}",
            openai_key=secret,
            prompt="Summarise.",
        )
        done = await wait_done(scraping_stack, accepted["task_id"], h)
        assert done["status"] == "SUCCESS", done
        # The worker really used the key: the model server saw it.
        assert e2e_openai.requests[-1]["_auth"] == f"Bearer {secret}"
        await asyncio.sleep(0.5)  # let the trace of the delivery land
        captured: list[bytes] = []
        while (msg := channel.basic_get(queue, no_ack=True)) is not None:
            captured.append(bytes(msg.body))
            captured.append(repr(msg.properties).encode())
    finally:
        try:
            channel.queue_delete(queue)
        finally:
            channel.close()
            conn.release()
            _rabbitmqctl("trace_off", "-p", vhost)

    broker = b"\n".join(captured)
    # The capture works: it holds the task's publish and delivery, with the key's reference.
    assert accepted["task_id"].encode() in broker
    assert b"scraping.scrape_page" in broker and b"kref_" in broker
    assert secret.encode() not in broker
    assert secret[-16:].encode() not in broker

    stored = _redis_dump(os.environ["REDIS_URL"])
    assert stored, "the Redis scan found nothing; it is not scanning the right database"
    assert not [v for v in stored if secret.encode() in v or secret[-16:].encode() in v]
    refs = set(re.findall(rb"kref_[A-Za-z0-9_-]{32,64}", broker))
    assert len(refs) == 1, refs
    assert b"scrape:keyref:" + refs.pop() not in stored, "the key's reference outlived its task"

    logs = "".join(p.log_text() for p in scraping_stack.procs)
    assert "scraping.scrape_page" in logs or accepted["task_id"] in logs
    assert secret not in logs and secret[-16:] not in logs

    async with httpx.AsyncClient(base_url=scraping_stack.urls["task"]) as client:
        status = await client.get(f"{P}/task-status/{accepted['task_id']}", headers=h)
        progress = await client.get(f"{P}/task-progress/{accepted['task_id']}", headers=h)
    assert secret not in status.text and secret not in progress.text
