"""Through `python -m gateway` to the real task-service, its worker, Redis and RabbitMQ."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest

API = "/smart_application/tasks"
Auth = Callable[..., dict[str, str]]


@pytest.fixture
async def client(gateway_process: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        base_url=gateway_process, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        yield session


def user() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}"


async def wait_for_status(
    client: aiohttp.ClientSession, task_id: str, headers: dict[str, str], timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        async with client.get(f"{API}/task-status/{task_id}", headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            body: dict[str, Any] = await resp.json()
        if body["status"] in {"SUCCESS", "FAILURE", "REVOKED"}:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)


async def test_seed_background_task_and_status_through_the_gateway(
    client: aiohttp.ClientSession, auth: Auth
) -> None:
    headers = {**auth(user(), "tasks"), "X-Request-ID": f"e2e-{uuid.uuid4().hex}"}
    async with client.post(
        f"{API}/background-task/",
        json={"task_type": "data_processing", "data": {"input": "sample_data"}},
        headers=headers,
    ) as resp:
        assert resp.status == 202, await resp.text()
        assert resp.headers["X-Request-ID"] == headers["X-Request-ID"]
        assert "RateLimit-Remaining" in resp.headers
        accepted = await resp.json()
    assert accepted["status"] == "PENDING"
    assert accepted["links"]["status"] == f"{API}/task-status/{accepted['task_id']}"
    done = await wait_for_status(client, accepted["task_id"], headers)
    assert done["status"] == "SUCCESS", done
    assert done["result"]["processed"] == {"input": "sample_data"}

    # Without the trailing slash too, answered directly (no redirect that would drop the body).
    async with client.post(
        f"{API}/background-task",
        json={"task_type": "data_processing", "data": {"input": "x"}},
        headers=headers,
        allow_redirects=False,
    ) as resp:
        assert resp.status == 202


async def test_cache_put_get_delete_through_the_gateway(client: aiohttp.ClientSession, auth: Auth) -> None:
    me, other = auth(user(), "cache"), auth(user(), "cache")
    key = f"{API}/cache/profile.{uuid.uuid4().hex[:6]}"
    async with client.put(key, json={"value": {"theme": "dark"}, "ttl": 60}, headers=me) as resp:
        assert resp.status == 200, await resp.text()
    async with client.get(key, headers=me) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["value"] == {"theme": "dark"} and 0 < body["ttl"] <= 60
    # Another user's namespace: the service's 404 envelope comes through untouched.
    async with client.get(key, headers=other) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "cache_key_not_found"
    async with client.delete(key, headers=me) as resp:
        assert resp.status == 204
        assert await resp.read() == b""
    async with client.get(key, headers=me) as resp:
        assert resp.status == 404


async def test_task_events_stream_through_the_gateway(client: aiohttp.ClientSession, auth: Auth) -> None:
    headers = auth(user(), "tasks")
    async with client.post(
        f"{API}/long-running-task/", json={"steps": 4, "step_seconds": 0.4}, headers=headers
    ) as resp:
        assert resp.status == 202, await resp.text()
        task_id = (await resp.json())["task_id"]
    events: list[tuple[float, str, dict[str, Any]]] = []
    async with client.get(f"{API}/task-events/{task_id}", headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        buffer = b""
        async for chunk in resp.content.iter_any():
            buffer += chunk
            while b"\n\n" in buffer:
                raw, buffer = buffer.split(b"\n\n", 1)
                fields = dict(
                    line.split(": ", 1) for line in raw.decode().splitlines() if not line.startswith(":")
                )
                if "event" in fields:
                    events.append((time.monotonic(), fields["event"], orjson.loads(fields["data"])))
    kinds = [kind for _, kind, _ in events]
    assert kinds[-1] == "status" and events[-1][2]["status"] == "SUCCESS", events
    progress = [(t, data) for t, kind, data in events if kind == "progress" and data.get("current")]
    assert len(progress) >= 2, events
    # Incremental: the progress events reached the client spread over the run, not in one burst.
    assert events[-1][0] - progress[0][0] > 0.5


async def test_identity_is_checked_before_the_service_is_reached(
    client: aiohttp.ClientSession, auth: Auth
) -> None:
    async with client.get(f"{API}/tasks/") as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    async with client.get(f"{API}/cache/k", headers=auth(user(), "tasks")) as resp:
        assert resp.status == 403
    # A task of another user is 404 (the service decides; the gateway passes it through).
    owner = auth(user(), "tasks")
    async with client.post(
        f"{API}/background-task/", json={"task_type": "data_processing", "data": {}}, headers=owner
    ) as resp:
        task_id = (await resp.json())["task_id"]
    async with client.get(f"{API}/task-status/{task_id}", headers=auth(user(), "tasks")) as resp:
        assert resp.status == 404


async def test_ready_and_openapi_with_one_real_service(client: aiohttp.ClientSession) -> None:
    async with client.get("/ready") as resp:
        body = await resp.json()
    # Only task-service runs in this test: it and Redis and RabbitMQ are ok, the others are not.
    assert resp.status == 503
    assert body["checks"]["task-service"] == "ok"
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["rabbitmq"] == "ok"
    assert body["checks"]["scraping-service"].startswith("unavailable")

    async with client.get("/openapi.json") as resp:
        assert resp.status == 200
        doc = await resp.json()
    for path in ("/background-task/", "/task-status/{task_id}", "/cache/{key}", "/task-events/{task_id}"):
        assert f"{API}{path}" in doc["paths"], path
    assert "/health" in doc["paths"]
    assert sorted(doc["info"]["x-unavailable-services"]) == ["notification-service", "scraping-service"]


async def test_upstream_service_down_is_503_through_the_process(
    client: aiohttp.ClientSession, auth: Auth
) -> None:
    async with client.post(
        f"{API}/background-scraping/", json={"url": "https://example.com"}, headers=auth(user(), "scrape")
    ) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"]
        assert (await resp.json())["error"]["code"] == "upstream_unavailable"
