from __future__ import annotations

import uuid

import httpx
from redis.asyncio import Redis
from scrape_fakes import PageServer

from scraping_service.robots import KEY_PREFIX, RobotsCache, crawl_delay
from shared import origin_of

UA = "SmartApplicationBot/1.0 (+https://example.invalid/bot)"


async def fetch_text(url: str) -> tuple[int, str]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url)
        return response.status_code, response.text


async def fresh(redis: Redis, server: PageServer) -> None:
    await redis.delete(KEY_PREFIX + origin_of(server.base))


async def test_disallowed_path_and_crawl_delay(redis: Redis) -> None:
    server = await PageServer().start()
    try:
        cache = RobotsCache(redis, fetch_text, UA)
        denied = await cache.check(f"{server.base}/private/secret")
        assert denied.allowed is False and denied.source == "rules"
        allowed = await cache.check(f"{server.base}/article")
        assert allowed.allowed is True
        assert allowed.crawl_delay == 0.2
        # Fetched once, then served from Redis for every worker.
        assert server.hits.count("/robots.txt") == 1
        assert await redis.ttl(KEY_PREFIX + origin_of(server.base)) > 3600
    finally:
        await fresh(redis, server)
        await server.stop()


async def test_agent_specific_rules(redis: Redis) -> None:
    server = await PageServer(
        robots="User-agent: SmartApplicationBot\nDisallow: /\n\nUser-agent: *\nAllow: /\n"
    ).start()
    try:
        assert (await RobotsCache(redis, fetch_text, UA).check(f"{server.base}/article")).allowed is False
        await fresh(redis, server)
        other = RobotsCache(redis, fetch_text, "OtherBot/2.0")
        assert (await other.check(f"{server.base}/article")).allowed is True
    finally:
        await fresh(redis, server)
        await server.stop()


async def test_missing_robots_allows_and_server_error_disallows(redis: Redis) -> None:
    server = await PageServer().start()
    try:
        server.robots_status = 404
        assert (await RobotsCache(redis, fetch_text, UA).check(f"{server.base}/private/x")).allowed
        await fresh(redis, server)
        server.robots_status = 503
        decision = await RobotsCache(redis, fetch_text, UA).check(f"{server.base}/article")
        assert decision.allowed is False and decision.source == "unreachable"
        assert await redis.ttl(KEY_PREFIX + origin_of(server.base)) <= 300
    finally:
        await fresh(redis, server)
        await server.stop()


async def test_unreachable_host_disallows(redis: Redis) -> None:
    async def refuse(url: str) -> tuple[int, str]:
        raise ConnectionRefusedError(url)

    url = f"http://127.0.0.1:9/{uuid.uuid4().hex}"
    try:
        decision = await RobotsCache(redis, refuse, UA).check(url)
        assert decision.allowed is False and decision.source == "unreachable"
    finally:
        await redis.delete(KEY_PREFIX + origin_of(url))


def test_origin_normalisation() -> None:
    assert origin_of("HTTPS://Example.COM:443/a?b") == "https://example.com"
    assert origin_of("http://example.com:8080/x") == "http://example.com:8080"
    assert origin_of("http://[::1]:8000/") == "http://[::1]:8000"


def test_crawl_delay_parsing() -> None:
    body = (
        "User-agent: OtherBot\nCrawl-delay: 9\n\n"
        "User-agent: SmartApplicationBot\nUser-agent: foo\nDisallow: /x\nCrawl-delay: 1.5\n\n"
        "User-agent: *\nCrawl-delay: 3\n"
    )
    assert crawl_delay(body, UA) == 1.5
    assert crawl_delay(body, "Mozilla/5.0") == 3
    assert crawl_delay("User-agent: *\nDisallow: /\n", UA) is None
    assert crawl_delay("User-agent: *\nCrawl-delay: soon\n", UA) is None
