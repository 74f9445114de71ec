"""The daily token budget on the server's OpenAI key, on the real API and worker processes.

The server key is the local OpenAI stand-in's key; each user's count lives in Redis per UTC
day and is what the model's responses reported.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from scrape_fakes import E2E_KEY, FakeOpenAI, PageServer
from test_scrape_e2e import P, submit, wait_done

from scraping_service.budget import budget_key
from testkit import Stack

BUDGET = 5000
Auth = Callable[..., dict[str, str]]


@pytest.fixture(scope="module")
async def budget_openai() -> AsyncIterator[FakeOpenAI]:
    server = await FakeOpenAI(api_key=E2E_KEY).start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
def budget_stack(
    infra: Path, task_stack: Stack, budget_openai: FakeOpenAI, e2e_pages: PageServer
) -> Iterator[Stack]:
    """scraping-service with a server key (the stand-in's) and a tiny daily budget per user."""
    env = {
        **os.environ,
        "OPENAI_BASE_URL": budget_openai.base_url,
        "OPENAI_API_KEY": E2E_KEY,
        "OPENAI_SERVER_KEY_DAILY_TOKENS_PER_USER": str(BUDGET),
        "OUTBOUND_ALLOWLIST": f"127.0.0.1:{e2e_pages.port}",
        "SCRAPE_HOST_RATE": "200",
        "SCRAPE_HOST_BURST": "100",
        "SCRAPE_CHUNK_TOKENS": "512",
        "SCRAPE_MODEL_CONCURRENCY": "1",
        "OPENAI_MAX_ATTEMPTS": "1",
        "SCRAPE_TASK_MAX_RETRIES": "0",
    }
    stack = Stack(env, infra)
    stack.urls.update(task_stack.urls)
    try:
        stack.api("scraping_service", "scraping")
        stack.worker("scraping_service.worker", "scraping", concurrency=1)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(os.environ["REDIS_URL"])
    yield client
    await client.aclose()


async def test_server_key_spending_is_counted_from_model_usage_and_capped_per_user_per_day(
    budget_stack: Stack,
    budget_openai: FakeOpenAI,
    e2e_pages: PageServer,
    redis_client: aioredis.Redis,
    auth: Auth,
) -> None:
    user = f"budget-{uuid.uuid4().hex[:8]}"
    h = auth(user, "tasks scrape")
    async with httpx.AsyncClient(base_url=budget_stack.urls["scraping"], timeout=30) as client:
        # 1. A small page on the server's key: the count is exactly what the model reported.
        done = await wait_done(
            budget_stack,
            (await submit(client, h, url=f"{e2e_pages.base}/article?b={user}", model="gpt-4o"))["task_id"],
            h,
        )
        assert done["status"] == "SUCCESS", done
        usage = done["result"]["usage"]
        spent = usage["prompt_tokens"] + usage["completion_tokens"]
        assert 0 < spent < BUDGET
        assert int(await redis_client.get(budget_key(user))) == spent
        assert 0 < await redis_client.ttl(budget_key(user)) <= 2 * 24 * 3600

        # 2. Nearly spent: a long page is accepted, its first call passes the budget, and the
        #    task stops before the next call instead of spending on.
        await redis_client.set(budget_key(user), BUDGET - 1)
        calls_before = len(budget_openai.requests)
        long = await submit(client, h, url=f"{e2e_pages.base}/long?b={user}", model="gpt-4o")
        failed = await wait_done(budget_stack, long["task_id"], h)
        assert failed["status"] == "FAILURE", failed
        assert "daily budget" in failed["error"]["message"]
        assert len(budget_openai.requests) == calls_before + 1
        assert int(await redis_client.get(budget_key(user))) > BUDGET

        # 3. Spent: the next submission without a key is refused at the door, until midnight UTC.
        r = await client.post(
            f"{P}/background-scraping/",
            json={"url": f"{e2e_pages.base}/article", "model": "gpt-4o"},
            headers=h,
        )
        assert r.status_code == 429, r.text
        assert r.json()["error"]["code"] == "model_budget_exceeded"
        assert 0 < int(r.headers["Retry-After"]) <= 24 * 3600 + 1

        # 4. The user's own key is theirs to spend, and another user's budget is untouched.
        own = await submit(
            client, h, url=f"{e2e_pages.base}/article?own={user}", model="gpt-4o", openai_key=E2E_KEY
        )
        assert (await wait_done(budget_stack, own["task_id"], h))["status"] == "SUCCESS"
        other = auth(f"{user}-other", "tasks scrape")
        await submit(client, other, url=f"{e2e_pages.base}/article?o={user}", model="gpt-4o")
