"""scrape() end to end without a worker: local page server, local model server, real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from scrape_fakes import FakeOpenAI, PageServer

from scraping_service.fetch import Fetcher
from scraping_service.llm import ModelConfig
from scraping_service.politeness import HostThrottle, ThrottlePolicy
from scraping_service.robots import KEY_PREFIX, RobotsCache
from scraping_service.scrape import ScrapeDeps, ScrapeError, ScrapeJob, page_key, scrape
from shared import Allowlist, OutboundClient, origin_of

KEY = "sk-test-valid-key-0123456789abcdef"


@pytest.fixture
async def deps(page_server: PageServer, fake_openai: FakeOpenAI, redis: Redis) -> AsyncIterator[ScrapeDeps]:
    client = OutboundClient(Allowlist.parse(f"127.0.0.1:{page_server.port}"), timeout=5)
    throttle = HostThrottle(redis, ThrottlePolicy(200, 50, 5))
    fetcher = Fetcher(
        client, throttle, None, user_agent="TestBot/1", max_bytes=5 << 20, timeout_s=5, max_redirects=5
    )
    fetcher.robots = RobotsCache(redis, fetcher.fetch_robots, "TestBot/1")
    yield ScrapeDeps(
        redis=redis,
        fetcher=fetcher,
        model_config=ModelConfig(base_url=fake_openai.base_url, backoff_base_s=0.01, max_attempts=2),
        default_max_age=3600,
        page_cache_ttl=600,
        result_cache_ttl=600,
        max_markdown_chars=100_000,
    )
    await client.aclose()
    await redis.delete(KEY_PREFIX + origin_of(page_server.base))


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[int, int, str]] = []
        self.key_reads = 0

    async def progress(self, current: int, total: int, message: str) -> None:
        self.events.append((current, total, message))

    async def key(self) -> str:
        self.key_reads += 1
        return KEY


def job(url: str, **kw: Any) -> ScrapeJob:
    return ScrapeJob(url=url, model="gpt-4o", owner=kw.pop("owner", f"user-{uuid.uuid4().hex[:8]}"), **kw)


async def test_fresh_scrape_then_caches(
    deps: ScrapeDeps, page_server: PageServer, fake_openai: FakeOpenAI, redis: Redis
) -> None:
    url = f"{page_server.base}/article?{uuid.uuid4().hex}"
    rec = Recorder()
    owner = "alice-" + uuid.uuid4().hex[:6]
    result = await scrape(job(url, owner=owner), deps, rec.key, rec.progress)
    assert set(result) >= {
        "url",
        "final_url",
        "status_code",
        "title",
        "markdown",
        "summary",
        "model",
        "usage",
        "fetched_at",
        "from_cache",
    }
    assert "extraction" not in result
    assert result["url"] == url and result["status_code"] == 200
    assert result["title"] == "How Tidal Power Plants Work | Example News"
    assert "| La Rance | France | 240 |" in result["markdown"]
    assert result["summary"].startswith("Summary of:")
    assert result["usage"]["prompt_tokens"] > 0
    assert result["from_cache"] is False
    assert result["metadata"]["lang"] == "en-GB"
    assert [m for _, _, m in rec.events] == ["fetching", "extracting", "model 0/1", "model 1/1"]
    assert rec.key_reads == 1

    # Same user, same page, same question: nothing fetched, nothing spent.
    rec2 = Recorder()
    hits = len(page_server.hits)
    again = await scrape(job(url, owner=owner), deps, rec2.key, rec2.progress)
    assert again["from_cache"] is True and again["cache"] == {"page": True, "result": True}
    # Nothing was spent this time, and gpt-4o has a price: the estimate is a real zero.
    assert again["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "estimated_cost_usd": 0.0}
    assert again["summary"] == result["summary"]
    assert len(page_server.hits) == hits and len(fake_openai.requests) == 1
    assert rec2.key_reads == 0  # the key is not even decrypted

    # Another user: the page is reused, the answer is not.
    other = await scrape(job(url), deps, Recorder().key, Recorder().progress)
    assert other["cache"] == {"page": True, "result": False}
    assert len(fake_openai.requests) == 2

    # max_age=0: fetched anew; same content, so the owner's cached answer still applies.
    fresh = await scrape(job(url, owner=owner, max_age=0), deps, Recorder().key, Recorder().progress)
    assert fresh["cache"] == {"page": False, "result": True}
    assert len(page_server.hits) > hits
    await redis.delete(page_key(url))


async def test_another_prompt_or_schema_is_another_answer(
    deps: ScrapeDeps, page_server: PageServer, fake_openai: FakeOpenAI
) -> None:
    url = f"{page_server.base}/article?{uuid.uuid4().hex}"
    owner = "bob-" + uuid.uuid4().hex[:6]
    await scrape(job(url, owner=owner), deps, Recorder().key, Recorder().progress)
    await scrape(job(url, owner=owner, prompt="Who wrote it?"), deps, Recorder().key, Recorder().progress)
    schema = {"type": "object", "properties": {"author": {"type": "string"}}, "required": ["author"]}
    fake_openai.schema_answer = lambda _: {"author": "Ada Lovelace"}
    result = await scrape(job(url, owner=owner, schema=schema), deps, Recorder().key, Recorder().progress)
    assert result["extraction"] == {"author": "Ada Lovelace"} and "summary" not in result
    assert len(fake_openai.requests) == 3


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/challenge200", "bot_challenge"),
        ("/challenge", "bot_challenge"),
        ("/shell", "javascript_shell"),
        ("/soft404", "soft_404"),
        ("/image.png", "unsupported_content"),
        ("/private/secret", "robots_disallowed"),
        ("/missing", "page_not_found"),
        ("/huge", "body_too_large"),
    ],
)
async def test_no_tokens_are_spent_on_pages_that_are_not_content(
    deps: ScrapeDeps, page_server: PageServer, fake_openai: FakeOpenAI, path: str, code: str
) -> None:
    rec = Recorder()
    with pytest.raises(ScrapeError) as info:
        await scrape(job(page_server.base + path, max_age=0), deps, rec.key, rec.progress)
    assert info.value.code == code
    assert not info.value.retryable
    assert fake_openai.requests == [] and rec.key_reads == 0


async def test_other_types_are_scraped(deps: ScrapeDeps, page_server: PageServer) -> None:
    for path, needle in [
        ("/text", "tidal forecasts"),
        ("/data.json", '"price": 9.5'),
        ("/xhtml", "Grüße"),
        ("/latin1", "Café"),
    ]:
        result = await scrape(
            job(page_server.base + path, max_age=0), deps, Recorder().key, Recorder().progress
        )
        assert needle in result["markdown"], path


async def test_model_failures_become_scrape_errors(
    deps: ScrapeDeps, page_server: PageServer, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail(500, "down", times=5)
    with pytest.raises(ScrapeError) as info:
        await scrape(
            job(f"{page_server.base}/article?{uuid.uuid4().hex}"), deps, Recorder().key, Recorder().progress
        )
    assert info.value.retryable and info.value.code == "model_unavailable"

    async def bad_key() -> str:
        return "sk-bad-key-zzzzzzzzzzzzzzzz"

    fake_openai.script.clear()
    with pytest.raises(ScrapeError) as info:
        await scrape(
            job(f"{page_server.base}/article?{uuid.uuid4().hex}"), deps, bad_key, Recorder().progress
        )
    assert info.value.code == "model_auth_failed" and not info.value.retryable
    assert "zzzz" not in str(info.value)
