from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from testkit import Stack

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scrape_fakes import E2E_KEY, FakeOpenAI, PageServer


@pytest.fixture(scope="session")
async def page_server() -> AsyncIterator[PageServer]:
    server = await PageServer().start()
    yield server
    await server.stop()


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    server = await FakeOpenAI().start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
async def redis() -> AsyncIterator[Redis]:
    # The root conftest gives this session its own database (REDIS_URL).
    client = Redis.from_url(os.environ["REDIS_URL"])
    yield client
    await client.aclose()


# --- real processes: scraping-service API and worker --------------------------------------


@pytest.fixture(scope="session")
async def e2e_openai() -> AsyncIterator[FakeOpenAI]:
    server = await FakeOpenAI(api_key=E2E_KEY).start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
async def e2e_pages() -> AsyncIterator[PageServer]:
    server = await PageServer().start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
def scraping_stack(
    infra: Path, task_stack: Stack, e2e_openai: FakeOpenAI, e2e_pages: PageServer
) -> Iterator[Stack]:
    """scraping-service's API and one worker on queue `scraping`; task-service for status."""
    env = {
        **os.environ,
        "OPENAI_BASE_URL": e2e_openai.base_url,
        "OUTBOUND_ALLOWLIST": f"127.0.0.1:{e2e_pages.port}",
        "SCRAPE_HOST_RATE": "200",
        "SCRAPE_HOST_BURST": "100",
        "OPENAI_MAX_ATTEMPTS": "2",
        "SCRAPE_TASK_MAX_RETRIES": "1",
        "SCRAPE_TIMEOUT_SECONDS": "5",
    }
    env.pop("OPENAI_API_KEY", None)
    stack = Stack(env, infra)
    stack.urls.update(task_stack.urls)
    try:
        stack.api("scraping_service", "scraping")
        stack.worker("scraping_service.worker", "scraping", concurrency=2)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def scraping_client(scraping_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=scraping_stack.urls["scraping"], timeout=30) as client:
        yield client
