"""Rate limit (shared through the real Redis) and CORS."""

from __future__ import annotations

import uuid

import aiohttp
from gateway_harness import GatewayFactory
from gateway_upstream import StandInService, closed_port

from shared import metrics_registry, render_metrics
from testkit import sample_value

API = "/smart_application/tasks"


async def test_burst_then_429_with_retry_after_and_ratelimit_headers(
    start_gateway: GatewayFactory, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(rate_limit_per_minute=60, rate_limit_burst=3)
    headers = gw.auth(sub=f"rl-{uuid.uuid4().hex}")
    remaining = []
    for _ in range(3):
        async with http.get(f"{gw.url}{API}/cache/k", headers=headers) as resp:
            assert resp.status == 200
            assert resp.headers["RateLimit-Limit"] == "3"
            assert resp.headers["RateLimit-Policy"] == "3;w=3"
            remaining.append(int(resp.headers["RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    before = len(upstream.seen)
    async with http.get(f"{gw.url}{API}/cache/k", headers=headers) as resp:
        assert resp.status == 429
        assert 1 <= int(resp.headers["Retry-After"]) <= 2
        assert resp.headers["RateLimit-Remaining"] == "0"
        assert int(resp.headers["RateLimit-Reset"]) >= 1
        body = await resp.json()
    assert body["error"]["code"] == "rate_limited" and body["error"]["request_id"]
    assert len(upstream.seen) == before
    # Another user has a budget of their own.
    async with http.get(f"{gw.url}{API}/cache/k", headers=gw.auth(sub=f"rl-{uuid.uuid4().hex}")) as resp:
        assert resp.status == 200


async def test_limit_is_shared_by_every_replica(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    one = await start_gateway(rate_limit_per_minute=60, rate_limit_burst=4)
    two = await start_gateway(rate_limit_per_minute=60, rate_limit_burst=4)
    headers = one.auth(sub=f"rl-{uuid.uuid4().hex}")
    statuses = []
    for gw in (one, two, one, two, one, two):
        async with http.get(f"{gw.url}{API}/cache/k", headers=headers) as resp:
            statuses.append(resp.status)
    assert statuses == [200, 200, 200, 200, 429, 429]


async def test_redis_down_falls_back_to_a_per_process_limit(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(
        REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0",
        rate_limit_per_minute=60,
        rate_limit_burst=2,
        rate_limit_fallback_seconds=120,  # one fall back, however slow the machine
    )
    headers = gw.auth(sub=f"rl-{uuid.uuid4().hex}")
    before = render_metrics(metrics_registry())[0].decode()
    statuses = []
    for _ in range(3):
        async with http.get(f"{gw.url}{API}/cache/k", headers=headers) as resp:
            statuses.append(resp.status)
    # Requests still flow (fail-soft), and the limit still holds within this process.
    assert statuses == [200, 200, 429]
    # The gateway runs in this process: read its registry as GATEWAY_METRICS_PORT would serve it.
    text = render_metrics(metrics_registry())[0].decode()
    # It fell back once (for the whole period), and refused one request. The counters live
    # in this test process, shared by every gateway it runs: count the change.
    for name in ("smartapp_gateway_ratelimit_fallback_total", "smartapp_gateway_rate_limited_total"):
        assert sample_value(text, name) - sample_value(before, name) == 1, name


async def test_rate_limit_can_be_turned_off(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(rate_limit_enabled=False, rate_limit_per_minute=1, rate_limit_burst=1)
    headers = gw.auth(sub=f"rl-{uuid.uuid4().hex}")
    for _ in range(3):
        async with http.get(f"{gw.url}{API}/cache/k", headers=headers) as resp:
            assert resp.status == 200
            assert "RateLimit-Limit" not in resp.headers


async def test_cors_preflight_and_exposed_headers(
    start_gateway: GatewayFactory, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(cors_origins="https://app.example, https://admin.example")
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with http.options(f"{gw.url}{API}/background-task/", headers=preflight) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert upstream.seen == []  # answered by the gateway, no token needed

    async with http.options(
        f"{gw.url}{API}/background-task/", headers={**preflight, "Origin": "https://evil.example"}
    ) as resp:
        assert resp.status == 400
        assert "Access-Control-Allow-Origin" not in resp.headers

    async with http.get(
        f"{gw.url}{API}/cache/k", headers={**gw.auth(), "Origin": "https://admin.example"}
    ) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == "https://admin.example"
        assert "RateLimit-Remaining" in resp.headers["Access-Control-Expose-Headers"]
    # Errors carry CORS headers too, so a browser app can read the envelope.
    async with http.get(f"{gw.url}{API}/cache/k", headers={"Origin": "https://app.example"}) as resp:
        assert resp.status == 401
        assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"


async def test_no_cors_headers_unless_configured(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway()
    async with http.get(
        f"{gw.url}{API}/cache/k", headers={**gw.auth(), "Origin": "https://app.example"}
    ) as r:
        assert r.status == 200
        assert "Access-Control-Allow-Origin" not in r.headers
