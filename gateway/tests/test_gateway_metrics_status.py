"""A request its client abandons is counted as 499 (client closed), not as a server error."""

from __future__ import annotations

import asyncio

import aiohttp
from gateway_harness import GatewayFactory
from gateway_upstream import StandInService
from yarl import URL

from shared import metrics_registry, render_metrics
from testkit import sample_value

API = "/smart_application/tasks"


async def test_an_abandoned_upload_is_499_not_500(
    start_gateway: GatewayFactory, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway()
    labels = {"service": "gateway", "method": "POST", "route": f"{API}/background-task/"}

    async def count(status: str) -> float:
        # The gateway runs in this process: read its registry as GATEWAY_METRICS_PORT serves it.
        text = render_metrics(metrics_registry())[0].decode()
        return sample_value(text, "smartapp_http_requests_total", {**labels, "status": status})

    before = {s: await count(s) for s in ("499", "500")}
    head = (
        f"POST {API}/background-task/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
        f"Authorization: Bearer {gw.token()}\r\n\r\n"
    ).encode()
    for _ in range(2):
        _, writer = await asyncio.open_connection("127.0.0.1", URL(gw.url).port)
        writer.write(head + b"x" * 1000)
        await writer.drain()
        await asyncio.sleep(0.1)  # the gateway has read the first part and waits for more
        writer.close()
        await writer.wait_closed()
    for _ in range(100):  # the gateway notices the disconnect on its next read
        if await count("499") - before["499"] >= 2:
            break
        await asyncio.sleep(0.05)
    assert await count("499") - before["499"] == 2
    assert await count("500") == before["500"]
    assert upstream.seen == []
