"""Event streams at the gateway, in front of a stand-in service: the per-user cap and lifetime.

The same behaviour through the real services, across replicas and with a killed replica, is
in tests/test_stream_fair_share.py.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from gateway_harness import GatewayFactory
from gateway_upstream import StandInService

API = "/smart_application/tasks"


async def test_stream_cap_refuses_one_more_and_frees_on_close(
    start_gateway: GatewayFactory, upstream: StandInService
) -> None:
    gw = await start_gateway(max_streams_per_user=3)
    upstream.event_gate.set()
    headers = gw.auth("capped-user")
    async with aiohttp.ClientSession() as http:
        opened = [await http.get(f"{gw.url}{API}/inbox/stream?forever=1", headers=headers) for _ in range(3)]
        assert [r.status for r in opened] == [200] * 3
        async with http.get(f"{gw.url}{API}/task-events/t1?forever=1", headers=headers) as refused:
            assert refused.status == 429
            body = await refused.json()
            assert body["error"]["code"] == "too_many_streams"
            assert int(refused.headers["Retry-After"]) > 0
        # Another user is not affected, and ordinary requests of the capped user still pass.
        async with http.get(f"{gw.url}{API}/task-events/t1", headers=gw.auth("someone-else")) as other:
            assert other.status == 200
            await other.read()
        async with http.get(f"{gw.url}{API}/anything", headers=headers) as plain:
            assert plain.status == 200
        opened.pop().close()
        deadline = time.monotonic() + 5
        while True:
            again = await http.get(f"{gw.url}{API}/inbox/stream?forever=1", headers=headers)
            if again.status == 200:
                opened.append(again)
                break
            again.release()
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        for r in opened:
            r.close()


async def test_stream_ends_cleanly_at_stream_max_seconds(
    start_gateway: GatewayFactory, upstream: StandInService
) -> None:
    gw = await start_gateway(stream_max_seconds=0.5)
    upstream.event_gate.set()
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        async with http.get(f"{gw.url}{API}/inbox/stream?forever=1", headers=gw.auth()) as resp:
            assert resp.status == 200
            body = await asyncio.wait_for(resp.read(), 10)  # a clean end: no payload error
    assert 0.4 < time.monotonic() - started < 5
    assert body.startswith(b"event: progress")
    await asyncio.wait_for(upstream.events_closed.wait(), 5)
