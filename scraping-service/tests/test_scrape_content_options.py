"""Selectors, user headers, PDFs and the cost estimate, through scrape() with real Redis and the
local page and model servers (no worker: the end-to-end twins are in test_scrape_e2e_options)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pdf_pages import make_pdf
from redis.asyncio import Redis
from scrape_fakes import FakeOpenAI, PageServer

from scraping_service.content_selectors import SelectorError, check_selectors
from scraping_service.fetch import Fetcher
from scraping_service.llm import ModelConfig
from scraping_service.pdf import PdfError, read_pdf
from scraping_service.politeness import HostThrottle, ThrottlePolicy
from scraping_service.prices import PRICES_AS_OF, estimated_cost_usd, price_for
from scraping_service.request_headers import HeaderError, check_headers
from scraping_service.robots import KEY_PREFIX, RobotsCache
from scraping_service.scrape import RESULT_PREFIX, ScrapeDeps, ScrapeError, ScrapeJob, page_key, scrape
from shared import Allowlist, OutboundClient, origin_of

KEY = "sk-test-valid-key-0123456789abcdef"

RECIPES = """<!doctype html><html><head><title>Two breakfasts</title></head><body>
<nav><a href="/">Home</a> <a href="/about">About</a></nav>
<div class="recipe"><h2>Pancakes</h2>
<p>Mix flour, eggs and milk into a smooth batter, rest it for half an hour, then fry thin
rounds in a little butter until they are golden on both sides.</p>
<p class="ad">BUY NONSTICK PANS TODAY</p></div>
<aside class="comments" role="complementary"><p>Great recipe, I added blueberries to the batter
and it was lovely, my children asked for a second plate straight away.</p></aside>
<div class="recipe"><h2>Waffles</h2>
<p>Whisk the batter until no lumps remain, let it rest ten minutes, and cook it in a hot waffle
iron until the steam stops and the edges are crisp.</p></div>
</body></html>"""

PDF_MARKDOWN = "# Tidal Notes\n\nTidal power in France.\nLa Rance opened in 1966.\n\nSecond page text here."


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


async def _key() -> str:
    return KEY


async def _progress(current: int, total: int, message: str) -> None:
    return None


def job(url: str, **kw: Any) -> ScrapeJob:
    kw.setdefault("model", "gpt-4o")
    return ScrapeJob(url=url, owner=kw.pop("owner", f"user-{uuid.uuid4().hex[:8]}"), **kw)


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


# --- selectors ------------------------------------------------------------------------------


async def test_selectors_narrow_the_content_and_key_their_own_cache_entries(
    deps: ScrapeDeps, page_server: PageServer, fake_openai: FakeOpenAI
) -> None:
    url = page_server.add(f"recipes-{uuid.uuid4().hex[:6]}", RECIPES)
    owner = "sel-" + uuid.uuid4().hex[:6]
    narrowed = job(url, owner=owner, include_selectors=(".recipe",), exclude_selectors=(".ad",))
    first = await scrape(narrowed, deps, _key, _progress)
    md = first["markdown"]
    assert "Pancakes" in md and "Waffles" in md and md.index("Pancakes") < md.index("Waffles")
    assert "BUY NONSTICK PANS" not in md and "blueberries" not in md and "About" not in md
    assert first["title"] == "Two breakfasts"  # the head is kept

    before = len(fake_openai.requests)
    plain = await scrape(job(url, owner=owner), deps, _key, _progress)
    # Another content, another page entry and another answer: neither cache serves the other.
    assert plain["cache"] == {"page": False, "result": False}
    assert "blueberries" in plain["markdown"] or plain["markdown"] != md
    assert len(fake_openai.requests) == before + 1
    assert page_key(url) != page_key(url, (".recipe",), (".ad",))

    again = await scrape(narrowed, deps, _key, _progress)
    assert again["cache"] == {"page": True, "result": True} and again["markdown"] == md
    assert len(fake_openai.requests) == before + 1

    # What the user chose counts even where extract() would see chrome (aside, .comments).
    chosen = await scrape(job(url, owner=owner, include_selectors=("aside.comments",)), deps, _key, _progress)
    assert "blueberries" in chosen["markdown"] and "Pancakes" not in chosen["markdown"]


async def test_include_selectors_that_match_nothing_fail_before_any_model_call(
    deps: ScrapeDeps, page_server: PageServer, fake_openai: FakeOpenAI
) -> None:
    url = page_server.add(f"recipes-{uuid.uuid4().hex[:6]}", RECIPES)
    before = len(fake_openai.requests)
    with pytest.raises(ScrapeError) as caught:
        await scrape(job(url, include_selectors=("#no-such-thing",)), deps, _key, _progress)
    assert caught.value.code == "no_selector_match"
    assert len(fake_openai.requests) == before


def test_selector_and_header_checks_name_the_problem() -> None:
    assert check_selectors("include_selectors", [" article ", "div.post > p"]) == ["article", "div.post > p"]
    for bad in (["a["], [""], ["x" * 300], ["p"] * 21):
        with pytest.raises(SelectorError):
            check_selectors("include_selectors", bad)
    assert check_headers({"Cookie": "session=abc", "Accept-Language": "fr"}) == {
        "Cookie": "session=abc",
        "Accept-Language": "fr",
    }
    refused = [
        {"Host": "evil.example"},
        {"Content-Length": "5"},
        {"Transfer-Encoding": "chunked"},
        {"Connection": "close"},
        {"Proxy-Authorization": "x"},
        {"User-Agent": "x"},
        {"X-Bad": "a\r\nInjected: 1"},
        {"Bad Name": "x"},
        {"Cookie": "a", "cookie": "b"},
        {"X-Big": "v" * 5000},
        {f"X-{i}": "v" for i in range(11)},
    ]
    for headers in refused:
        with pytest.raises(HeaderError) as caught:
            check_headers(headers)
        assert "\r\n" not in str(caught.value) and "v" * 100 not in str(caught.value)


# --- headers --------------------------------------------------------------------------------


async def test_headers_reach_only_the_page_origin_and_nothing_is_cached(
    deps: ScrapeDeps, page_server: PageServer, fake_openai: FakeOpenAI, redis: Redis
) -> None:
    cookie = f"session=member-{uuid.uuid4().hex}"
    page_server.member_cookies.add(cookie)
    await redis.delete(KEY_PREFIX + origin_of(page_server.base))  # robots.txt is fetched anew
    owner = "hdr-" + uuid.uuid4().hex[:6]
    url = f"{page_server.base}/members?{uuid.uuid4().hex[:6]}"
    seen_before = len(page_server.seen)
    model_before = len(fake_openai.requests)

    for _ in range(2):
        result = await scrape(job(url, owner=owner, headers={"Cookie": cookie}), deps, _key, _progress)
        assert "Members-only appendix" in result["markdown"]
        assert result["from_cache"] is False and result["cache"] == {"page": False, "result": False}
    seen = page_server.seen[seen_before:]
    pages = [_lower(h) for path, h in seen if path.startswith("/members")]
    assert len(pages) == 2 and all(h["cookie"] == cookie for h in pages)  # fetched twice, with it
    robots = [_lower(h) for path, h in seen if path == "/robots.txt"]
    assert robots and all("cookie" not in h for h in robots)
    assert len(fake_openai.requests) == model_before + 2  # the answer was not reused either
    assert await redis.get(page_key(url)) is None
    assert not [k async for k in redis.scan_iter(f"{RESULT_PREFIX}{owner}:*")]

    # A same-origin redirect keeps the cookie; one to another origin (another host) drops it.
    same = await scrape(
        job(f"{page_server.base}/to?u=/members", headers={"Cookie": cookie}), deps, _key, _progress
    )
    assert "Members-only appendix" in same["markdown"]
    other = f"http://localhost:{page_server.port}/members?x"
    mark = len(page_server.seen)
    with pytest.raises(ScrapeError) as caught:
        await scrape(
            job(f"{page_server.base}/to?u={other}", headers={"Cookie": cookie, "X-Token": "tok-123456"}),
            deps,
            _key,
            _progress,
        )
    assert caught.value.code == "site_refused"  # the members page answered 401 without it
    hops = [(path, _lower(h)) for path, h in page_server.seen[mark:] if path != "/robots.txt"]
    assert [p for p, _ in hops] == [f"/to?u={other}", "/members?x"]
    assert hops[0][1]["cookie"] == cookie and hops[0][1]["x-token"] == "tok-123456"
    assert "cookie" not in hops[1][1] and "x-token" not in hops[1][1]


# --- PDF ------------------------------------------------------------------------------------


async def test_pdf_pages_become_markdown_and_bad_pdfs_fail_with_codes(
    deps: ScrapeDeps, page_server: PageServer
) -> None:
    pdf = make_pdf(
        [["Tidal power in France.", "La Rance opened in 1966."], ["Second page text here."]], "Tidal Notes"
    )
    tag = uuid.uuid4().hex[:6]
    typed = page_server.add(f"notes-{tag}.pdf", pdf, "application/pdf")
    sniffed = page_server.add(f"notes-{tag}.bin", pdf, "application/octet-stream")
    for url in (typed, sniffed):
        result = await scrape(job(url, include_selectors=("article",)), deps, _key, _progress)
        assert result["title"] == "Tidal Notes"
        assert result["markdown"] == PDF_MARKDOWN
        assert any("apply to HTML pages" in w for w in result["warnings"])

    encrypted = page_server.add(
        f"locked-{tag}.pdf", make_pdf([["Hidden text"]], password="pw"), "application/pdf"
    )
    broken = page_server.add(
        f"broken-{tag}.pdf", b"%PDF-1.7\n1 0 obj <<\n" + b"\x00garbage" * 40, "application/pdf"
    )
    for url, code in ((encrypted, "pdf_encrypted"), (broken, "pdf_unreadable")):
        with pytest.raises(ScrapeError) as caught:
            await scrape(job(url), deps, _key, _progress)
        assert caught.value.code == code and "PDF" in str(caught.value)


async def test_a_pdf_read_past_its_deadline_is_stopped_with_pdf_timeout() -> None:
    # The child cannot even start pypdf in 10 ms: it is killed and reaped, the caller gets a code.
    with pytest.raises(PdfError) as caught:
        await read_pdf(make_pdf([["Some text."]]), timeout_s=0.01)
    assert caught.value.code == "pdf_timeout"


# --- cost -----------------------------------------------------------------------------------


async def test_estimated_cost_follows_the_price_table_and_is_absent_for_unknown_models(
    deps: ScrapeDeps, page_server: PageServer
) -> None:
    assert PRICES_AS_OF.count("-") == 2
    price = price_for("gpt-4o-mini")
    assert price is not None and (price.input_per_million, price.output_per_million) == (0.15, 0.60)
    assert price_for("gpt-4o-mini-2024-07-18") == price
    url = f"{page_server.base}/page/cost-{uuid.uuid4().hex[:6]}"
    result = await scrape(job(url, model="gpt-4o-mini"), deps, _key, _progress)
    usage = result["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    expected = round((usage["prompt_tokens"] * 0.15 + usage["completion_tokens"] * 0.60) / 1e6, 8)
    assert usage["estimated_cost_usd"] == expected > 0
    assert estimated_cost_usd("gpt-4o-mini", usage["prompt_tokens"], usage["completion_tokens"]) == expected

    unknown = await scrape(job(url, model="acme-local-7b"), deps, _key, _progress)
    assert unknown["usage"]["prompt_tokens"] > 0
    assert "estimated_cost_usd" not in unknown["usage"]
