"""Proxy mechanics against a stand-in HTTP service: headers, bodies, streams, failures."""

from __future__ import annotations

import asyncio
import io
import logging
import time
import tracemalloc
from collections.abc import AsyncIterator

import aiohttp
from gateway_harness import GatewayFactory, RunningGateway
from gateway_upstream import StandInService
from yarl import URL

API = "/smart_application/tasks"


def assert_envelope(body: dict[str, object], code: str) -> None:
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error, dict)
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert error["request_id"]


async def test_path_and_query_pass_through_unchanged(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    paths = [
        f"{API}/tasks/?status=SUCCESS&limit=5",
        f"{API}/tasks?limit=5",
        f"{API}/cache/a%3Ab",
        f"{API}/task-status/abc/",
    ]
    for path in paths:
        async with http.get(URL(gateway.url + path, encoded=True), headers=gateway.auth()) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["path"] == path
            assert resp.headers["X-Upstream"] == "yes"
    assert [s.path_qs for s in upstream.seen] == paths


async def test_each_segment_reaches_its_service(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    tasks, scraping, notify = StandInService(), StandInService(), StandInService()
    for s in (tasks, scraping, notify):
        await s.start()
    try:
        gw = await start_gateway(
            task_service_url=tasks.url, scraping_service_url=scraping.url, notification_service_url=notify.url
        )
        expected = {
            "background-task/": tasks,
            "long-running-task": tasks,
            "task-progress/x": tasks,
            "task-cancel/x": tasks,
            "task-events/x": tasks,
            "cache/k": tasks,
            "background-scraping/": scraping,
            "devices/": notify,
            "webpush/vapid-public-key": notify,
            "send-notification/": notify,
            "batch-notifications": notify,
            "notification-status/n1": notify,
            "notification-cancel/n1": notify,
            "notification-preferences": notify,
            "batch-status/b1": notify,
            "inbox/": notify,
        }
        for segment, service in expected.items():
            method = "POST" if "background" in segment or "notification" in segment else "GET"
            if segment.startswith("task-events"):
                method = "HEAD"
            before = len(service.seen)
            headers = gw.auth(scopes="tasks scrape cache notify:send")
            async with http.request(method, f"{gw.url}{API}/{segment}", headers=headers) as resp:
                assert resp.status < 300, (segment, resp.status)
            assert len(service.seen) == before + 1, segment
            assert service.last().path_qs == f"{API}/{segment}"
    finally:
        for s in (tasks, scraping, notify):
            await s.stop()


async def test_forwarding_headers_and_request_id(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    headers = {**gateway.auth(), "X-Request-ID": "req-123.abc"}
    async with http.get(f"{gateway.url}{API}/cache/k", headers=headers) as resp:
        assert resp.headers["X-Request-ID"] == "req-123.abc"
    seen = upstream.last().headers
    assert seen["authorization"] == [headers["Authorization"]]
    assert seen["x-request-id"] == ["req-123.abc"]
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-host"] == [URL(gateway.url).raw_authority]
    assert seen["x-forwarded-proto"] == ["http"]

    # An id that could inject into logs is replaced by one the gateway makes.
    async with http.get(
        f"{gateway.url}{API}/cache/k", headers={**gateway.auth(), "X-Request-ID": "bad id\tx"}
    ) as resp:
        made = resp.headers["X-Request-ID"]
    assert made != "bad id\tx" and len(made) == 32
    assert upstream.last().headers["x-request-id"] == [made]


async def test_spoofed_identity_and_hop_by_hop_headers_are_stripped(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    spoofed = {
        "X-User-Id": "admin",
        "X-Forwarded-User": "admin",
        "X-Forwarded-Email": "root@example.com",
        "X-Auth-User": "admin",
        "X-Authenticated-Userid": "admin",
        "X-Scopes": "admin",
        "X-Real-IP": "10.0.0.1",
        "X-Forwarded-For": "10.0.0.1",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "Forwarded": "for=10.0.0.1;proto=https",
        "X-HTTP-Method-Override": "DELETE",
        "X-Original-URL": "/admin",
        "Remote-User": "admin",
        "X-Service-Token": "a-scheduler-credential",
    }
    hop = {
        "Connection": "keep-alive, X-Hop-Listed",
        "X-Hop-Listed": "1",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Upgrade": "websocket",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
    }
    async with http.get(
        f"{gateway.url}{API}/cache/k", headers={**gateway.auth(), **spoofed, **hop, "X-Kept": "yes"}
    ) as resp:
        assert resp.status == 200
        # The upstream's Connection-listed response header does not reach the client either.
        assert "X-Secret-Hop" not in resp.headers
    seen = upstream.last().headers
    for name in [*spoofed, *hop]:
        if name.lower() in ("x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"):
            continue
        assert name.lower() not in seen, name
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-host"] != ["evil.example"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-kept"] == ["yes"]


async def test_trusted_load_balancer_forwarding_is_appended(
    start_gateway: GatewayFactory, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(trust_forwarded_headers=True)
    headers = {**gw.auth(), "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-User-Id": "x"}
    async with http.get(f"{gw.url}{API}/cache/k", headers=headers) as resp:
        assert resp.status == 200
    seen = upstream.last().headers
    assert seen["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["https"]
    assert "x-user-id" not in seen


async def test_request_bodies_small_medium_and_chunked(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}{API}/background-task/"
    for size in (0, 100, 300_000, 1_000_000):
        async with http.post(url, data=io.BytesIO(b"a" * size), headers=gateway.auth()) as resp:
            assert resp.status == 200
            assert (await resp.json())["body_size"] == size
        assert upstream.last().body_size == size

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"b" * 50_000

    async with http.post(url, data=chunks(), headers=gateway.auth()) as resp:
        assert resp.status == 200
        assert (await resp.json())["body_size"] == 500_000


async def test_ten_megabyte_body_is_413_without_being_read(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}{API}/background-task/"
    # Declared length: refused before a byte of the body is read.
    reader, writer = await asyncio.open_connection("127.0.0.1", URL(gateway.url).port)
    writer.write(
        (
            f"POST {API}/background-task/ HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n"
            f"Authorization: Bearer {gateway.token()}\r\nContent-Type: application/json\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 413")
    writer.close()

    # No declared length (chunked): counted as it streams and cut off past the limit.
    sent = 0

    async def ten_mb() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(160):
            sent += 65536
            yield b"c" * 65536

    before = len(upstream.seen)
    tracemalloc.start()
    try:
        async with http.post(url, data=ten_mb(), headers=gateway.auth()) as resp:
            assert resp.status == 413
            assert_envelope(await resp.json(), "payload_too_large")
    except aiohttp.ClientOSError:
        pass  # the gateway may close the socket while the client is still writing
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert sent < 10 * 1024 * 1024
    # Client, gateway and stand-in share this process: together they never held the body.
    assert peak < 3 * 1024 * 1024, peak
    # Whatever reached the upstream was cut short, never the whole body.
    assert all(s.body_size <= 1024 * 1024 + 65536 for s in upstream.seen[before:])


async def test_batch_notifications_take_larger_bodies(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    body = b"[" + b" " * (3 * 1024 * 1024) + b"]"
    url = f"{gateway.url}{API}/batch-notifications/"
    async with http.post(url, data=io.BytesIO(body), headers=gateway.auth(scopes="notify:send")) as r:
        assert r.status == 200
        assert (await r.json())["body_size"] == len(body)
    url = f"{gateway.url}{API}/send-notification/"
    async with http.post(url, data=io.BytesIO(body), headers=gateway.auth()) as r:
        assert r.status == 413


async def test_large_response_streams_through(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}{API}/big", headers=gateway.auth()) as resp:
        assert resp.status == 200
        assert len(await resp.read()) == 64 * 65536


async def test_event_stream_passes_through_incrementally(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}{API}/task-events/t1", headers=gateway.auth()) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        # The first event arrives while the upstream is still holding the second back.
        first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 3)
        assert b'"current": 1' in first
        upstream.event_gate.set()
        rest = await asyncio.wait_for(resp.content.read(), 3)
    assert b'"current": 2' in rest and b"SUCCESS" in rest


async def test_event_stream_ends_upstream_when_client_leaves(
    gateway: RunningGateway, upstream: StandInService
) -> None:
    upstream.event_gate.set()
    async with aiohttp.ClientSession() as own:
        resp = await own.get(f"{gateway.url}{API}/inbox/stream?forever=1", headers=gateway.auth())
        await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 3)
        resp.close()
    await asyncio.wait_for(upstream.events_closed.wait(), 5)


async def test_event_stream_outlives_the_request_deadline(
    start_gateway: GatewayFactory, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(request_deadline_seconds=0.5)
    async with http.get(f"{gw.url}{API}/task-events/t1", headers=gw.auth()) as resp:
        await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 3)
        await asyncio.sleep(1.0)
        upstream.event_gate.set()
        rest = await asyncio.wait_for(resp.content.read(), 3)
    assert b"SUCCESS" in rest


async def test_upstream_down_is_503_with_retry_after(
    start_gateway: GatewayFactory, dead_url: str, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(task_service_url=dead_url)
    async with http.get(f"{gw.url}{API}/cache/k", headers=gw.auth()) as resp:
        assert resp.status == 503
        assert int(resp.headers["Retry-After"]) > 0
        body = await resp.json()
    assert_envelope(body, "upstream_unavailable")
    assert "task service" in body["error"]["message"]
    assert body["error"]["request_id"] == resp.headers["X-Request-ID"]


async def test_slow_upstream_is_504_within_the_deadline(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(request_deadline_seconds=1.0)
    started = time.monotonic()
    async with http.get(f"{gw.url}{API}/slow?s=10", headers=gw.auth()) as resp:
        assert resp.status == 504
        assert_envelope(await resp.json(), "upstream_timeout")
    assert time.monotonic() - started < 3


async def test_cookies_from_a_service_are_never_replayed_for_another_client(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}{API}/cookie", headers=gateway.auth()) as resp:
        assert "session=for-one-user-only" in resp.headers["Set-Cookie"]
    async with (
        aiohttp.ClientSession() as other,
        other.get(f"{gateway.url}{API}/cookie", headers=gateway.auth()) as resp,
    ):
        assert (await resp.json())["cookie"] is None


async def test_paths_outside_the_table_and_dot_segments_are_404(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    for path in (
        "/smart_application/tasksX/cache/k",
        f"{API}/cache/../../../metrics",
        f"{API}/cache/%2e%2e/%2e%2e/ready",
        "/elsewhere",
    ):
        async with http.get(URL(gateway.url + path, encoded=True), headers=gateway.auth()) as resp:
            assert resp.status == 404, path
            assert_envelope(await resp.json(), "not_found")
    assert upstream.seen == []


async def test_service_errors_pass_through_untouched(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    for code in (404, 409, 422):
        async with http.delete(f"{gateway.url}{API}/status-{code}", headers=gateway.auth()) as resp:
            assert resp.status == code
            assert (await resp.json())["error"]["message"] == "No such task."


async def test_slow_or_abandoned_uploads_are_bounded(
    start_gateway: GatewayFactory,
    upstream: StandInService,
    http: aiohttp.ClientSession,
) -> None:
    errors: list[logging.LogRecord] = []
    catcher = logging.Handler(logging.ERROR)
    catcher.emit = errors.append  # type: ignore[assignment]
    # create_app() reconfigures the root logger, so listen on uvicorn's own logger.
    logging.getLogger("uvicorn.error").addHandler(catcher)
    gw = await start_gateway(request_deadline_seconds=0.5)
    port = URL(gw.url).port
    head = (
        f"POST {API}/background-task/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
        f"Authorization: Bearer {gw.token()}\r\n\r\n"
    ).encode()
    # Part of the body, then silence: 408 once the deadline passes.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + b"x" * 1000)
    await writer.drain()
    started = time.monotonic()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    assert status_line.startswith(b"HTTP/1.1 408"), status_line
    assert time.monotonic() - started < 2
    writer.close()
    # Part of the body, then gone: nothing reaches the service and nothing breaks.
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + b"x" * 1000)
        await writer.drain()
        await asyncio.sleep(0.1)  # the gateway has read the first part and waits for more
        writer.close()
        await writer.wait_closed()
    await asyncio.sleep(0.2)
    assert upstream.seen == []
    async with http.get(f"{gw.url}{API}/cache/k", headers=gw.auth()) as resp:
        assert resp.status == 200
    logging.getLogger("uvicorn.error").removeHandler(catcher)
    assert not errors, [r.getMessage() for r in errors]
