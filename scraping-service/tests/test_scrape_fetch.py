"""Fetching through the shared SSRF-safe client against the local page server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from scrape_fakes import PageServer

from scraping_service.fetch import Fetcher, FetchError
from scraping_service.politeness import COOLDOWN_PREFIX, HostThrottle, ThrottlePolicy
from scraping_service.robots import KEY_PREFIX, RobotsCache
from shared import Allowlist, OutboundClient, origin_of

UA = "SmartApplicationBot/0.1 (+test)"


@pytest.fixture
async def site(redis: Redis) -> AsyncIterator[PageServer]:
    server = await PageServer().start()
    yield server
    await redis.delete(KEY_PREFIX + origin_of(server.base), COOLDOWN_PREFIX + "127.0.0.1")
    await server.stop()


@pytest.fixture
async def fetcher(site: PageServer, redis: Redis) -> AsyncIterator[Fetcher]:
    client = OutboundClient(Allowlist.parse(f"127.0.0.1:{site.port}"), timeout=5, connect_timeout=2)
    throttle = HostThrottle(redis, ThrottlePolicy(requests_per_second=200, burst=50, max_wait_s=5))
    f = Fetcher(
        client, throttle, None, user_agent=UA, max_bytes=5 * 1024 * 1024, timeout_s=5, max_redirects=5
    )
    f.robots = RobotsCache(redis, f.fetch_robots, UA)
    yield f
    await client.aclose()


async def expect(fetcher: Fetcher, url: str, code: str) -> FetchError:
    with pytest.raises(FetchError) as info:
        await fetcher.fetch(url)
    assert info.value.code == code, str(info.value)
    return info.value


async def test_fetches_a_page_with_our_user_agent(fetcher: Fetcher, site: PageServer) -> None:
    page = await fetcher.fetch(f"{site.base}/article")
    assert page.status_code == 200
    assert page.content_type is not None and page.content_type.startswith("text/html")
    assert b"Tidal Power" in page.body
    assert page.final_url == f"{site.base}/article"
    assert page.fetched_at.endswith("Z")
    assert "/robots.txt" in site.hits  # robots.txt was consulted first


async def test_redirect_chain_is_followed(fetcher: Fetcher, site: PageServer) -> None:
    page = await fetcher.fetch(f"{site.base}/redirect/3")
    assert page.final_url == f"{site.base}/article"
    assert len(page.redirects) == 4


async def test_too_many_redirects(fetcher: Fetcher, site: PageServer) -> None:
    err = await expect(fetcher, f"{site.base}/redirect/8", "url_not_allowed")
    assert "too many redirects" in str(err) and not err.retryable


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{port}/article",  # loopback, not on the allow-list
        "http://127.0.0.1:1/article",  # allow-listed address, other port
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/article",
        "http://0x7f000001:1/article",  # hex spelling of loopback
        "http://2130706433:1/",  # decimal spelling
        "http://10.0.0.1/",
        "ftp://127.0.0.1:{port}/",
    ],
)
async def test_redirect_to_an_internal_address_is_refused(
    fetcher: Fetcher, site: PageServer, target: str
) -> None:
    err = await expect(fetcher, f"{site.base}/to?u={target.format(port=site.port)}", "url_not_allowed")
    assert "redirect refused" in str(err)
    assert not any(h.startswith("/article") for h in site.hits)


async def test_a_name_resolving_to_loopback_is_refused_at_resolve_time(fetcher: Fetcher) -> None:
    # /etc/hosts maps "localhost" and "vm" to 127.0.0.1; that port is not allow-listed.
    err = await expect(fetcher, "http://vm:9/", "url_not_allowed")
    assert "forbidden address" in str(err)


async def test_robots_disallow(fetcher: Fetcher, site: PageServer) -> None:
    err = await expect(fetcher, f"{site.base}/private/secret", "robots_disallowed")
    assert "robots.txt" in str(err) and not err.retryable
    assert "/private/secret" not in site.hits


async def test_huge_body_is_aborted(fetcher: Fetcher, site: PageServer) -> None:
    err = await expect(fetcher, f"{site.base}/huge", "body_too_large")
    assert "5 MB" in str(err)


async def test_slow_server_times_out_and_is_retryable(fetcher: Fetcher, site: PageServer) -> None:
    fetcher.timeout_s = 0.5
    err = await expect(fetcher, f"{site.base}/slow?s=3", "fetch_failed")
    assert err.retryable


async def test_non_html_type_is_fetched_as_is(fetcher: Fetcher, site: PageServer) -> None:
    page = await fetcher.fetch(f"{site.base}/image.png")
    assert page.content_type == "image/png"


async def test_challenge_status_is_named(fetcher: Fetcher, site: PageServer) -> None:
    err = await expect(fetcher, f"{site.base}/challenge", "bot_challenge")
    assert "bot challenge" in str(err)


async def test_404_is_permanent(fetcher: Fetcher, site: PageServer) -> None:
    err = await expect(fetcher, f"{site.base}/missing", "page_not_found")
    assert not err.retryable


async def test_429_cools_the_host_down(fetcher: Fetcher, site: PageServer, redis: Redis) -> None:
    err = await expect(fetcher, f"{site.base}/busy", "site_unavailable")
    assert err.retryable and err.retry_after == 2
    assert 1000 < await redis.pttl(COOLDOWN_PREFIX + "127.0.0.1") <= 2000
