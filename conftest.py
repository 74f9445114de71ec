"""Root fixtures: the real Redis, the real RabbitMQ, and real service and worker processes.

Tests run against their own Redis database and RabbitMQ vhost, so a platform started with
`make run` on the same machine is never touched.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from shared import testing
from shared.testing import Stack

os.environ.update(testing.test_env())

from shared import BaseServiceSettings, mint_token


@pytest.fixture(scope="session")
def settings() -> BaseServiceSettings:
    return BaseServiceSettings()


@pytest.fixture(scope="session")
def token(settings: BaseServiceSettings) -> Callable[..., str]:
    def make(sub: str = "alice", scopes: str = "tasks scrape cache", ttl: int = 3600) -> str:
        return mint_token(settings, sub, scopes.split(), ttl)

    return make


@pytest.fixture(scope="session")
def auth(token: Callable[..., str]) -> Callable[..., dict[str, str]]:
    def headers(sub: str = "alice", scopes: str = "tasks scrape cache") -> dict[str, str]:
        return {"Authorization": f"Bearer {token(sub, scopes)}"}

    return headers


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Redis and RabbitMQ answer; the test vhost exists; the test Redis db starts empty."""
    testing.ensure_vhost()
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.flushdb()
    client.close()
    yield tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def task_stack(infra: Path) -> Iterator[Stack]:
    """task-service's API and one worker on queue `default`."""
    callback_port = testing.free_port()
    stack = Stack({**os.environ, "OUTBOUND_ALLOWLIST": f"127.0.0.1:{callback_port}"}, infra)
    stack.urls["callback"] = f"http://127.0.0.1:{callback_port}/hook"
    try:
        stack.api("task_service", "task")
        stack.worker("task_service.worker", "default", concurrency=2)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def task_client(task_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=task_stack.urls["task"], timeout=30) as client:
        yield client
