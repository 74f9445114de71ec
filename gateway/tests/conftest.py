from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn
from gateway_harness import SECRET, GatewayFactory, RunningGateway, serve
from gateway_upstream import StandInService, closed_port

import testkit
from gateway.app import create_app
from gateway.settings import GatewaySettings
from testkit import Stack


@pytest.fixture
async def upstream() -> AsyncIterator[StandInService]:
    service = await StandInService().start()
    try:
        yield service
    finally:
        await service.stop()


@pytest.fixture
async def start_gateway(upstream: StandInService) -> AsyncIterator[GatewayFactory]:
    running: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(**overrides: Any) -> RunningGateway:
        values: dict[str, Any] = {
            "environment": "test",
            "jwt_secret": SECRET,
            "task_service_url": upstream.url,
            "scraping_service_url": upstream.url,
            "notification_service_url": upstream.url,
            "rate_limit_per_minute": 100_000,
            "rate_limit_burst": 10_000,
            "request_deadline_seconds": 5.0,
        }
        values.update(overrides)
        settings = GatewaySettings(**values)
        app = create_app(settings)
        url, server, task = await serve(app, settings)
        running.append((server, task))
        return RunningGateway(url, settings, app)

    yield start
    for server, task in running:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@pytest.fixture
async def gateway(start_gateway: GatewayFactory) -> RunningGateway:
    return await start_gateway()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def dead_url() -> str:
    return f"http://127.0.0.1:{closed_port()}"


@pytest.fixture(scope="session")
def gateway_process(task_stack: Stack, infra: Path) -> Iterator[str]:
    """`python -m gateway` (uvloop, httptools) in front of the real task-service and its worker.

    The scraping and notification services are not started: their URLs point at closed ports.
    """
    port = testkit.free_port()
    env = {
        **os.environ,
        "TASK_SERVICE_URL": task_stack.urls["task"],
        "SCRAPING_SERVICE_URL": f"http://127.0.0.1:{closed_port()}",
        "NOTIFICATION_SERVICE_URL": f"http://127.0.0.1:{closed_port()}",
        "RATE_LIMIT_PER_MINUTE": "100000",
        "RATE_LIMIT_BURST": "10000",
    }
    proc = testkit.start_api("gateway", port, env, infra)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()
