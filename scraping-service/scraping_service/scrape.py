"""One scrape, start to finish: cached or fresh fetch, extraction, model, result.

Kept out of the Celery task so that it can be run and tested with nothing but Redis and
local servers. The task (tasks.py) only supplies the key, the progress sink and the mapping
of ScrapeError onto retries and failures.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
from redis.asyncio import Redis

from shared import SCRAPE_PAGES

from .content_selectors import NoSelectorMatch, apply_selectors, is_html
from .extract import (
    ContentKind,
    ExtractedPage,
    NonContentError,
    UnsupportedContentError,
    decode_body,
    extract,
)
from .fetch import Fetcher, FetchError
from .llm import ModelConfig, ModelError, SpendGuard
from .mapreduce import PageInput, run_model
from .pdf import PdfError, is_pdf, pdf_markdown, read_pdf
from .prices import estimated_cost_usd
from .schema_validation import SchemaInvalidError, check_schema

__all__ = ["ScrapeDeps", "ScrapeError", "ScrapeJob", "scrape"]

# Bump when extraction output changes, so cached pages made by older code are not reused.
EXTRACTOR_VERSION = "2"
PAGE_PREFIX = f"scrape:page:v{EXTRACTOR_VERSION}:"
RESULT_PREFIX = f"scrape:result:v{EXTRACTOR_VERSION}:"
MAX_LINKS_IN_RESULT = 200

Progress = Callable[[int, int, str], Awaitable[None]]
KeyProvider = Callable[[], Awaitable[str]]


class ScrapeError(Exception):
    """A scrape that failed for a reason safe to show its owner."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        retryable: bool = False,
        retry_after: float | None = None,
        usage: dict[str, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after
        self.usage = usage


@dataclass(frozen=True, slots=True)
class ScrapeJob:
    url: str
    model: str
    owner: str
    prompt: str | None = None
    schema: dict[str, Any] | None = None
    max_age: int | None = None
    include_selectors: tuple[str, ...] = ()
    exclude_selectors: tuple[str, ...] = ()
    # The user's own request headers: secrets, so never in a repr, and never cached with.
    headers: Mapping[str, str] | None = field(default=None, repr=False)

    @property
    def private(self) -> bool:
        """A fetch with the user's headers may show what only they may see: no cache at all."""
        return bool(self.headers)


@dataclass(slots=True)
class ScrapeDeps:
    redis: Redis
    fetcher: Fetcher
    model_config: ModelConfig
    default_max_age: int
    page_cache_ttl: int
    result_cache_ttl: int
    max_markdown_chars: int


def _sha(data: bytes | str) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def page_key(url: str, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> str:
    # The entry holds the extracted page, so selectors are part of what it is.
    if not include and not exclude:
        return PAGE_PREFIX + _sha(url)
    return PAGE_PREFIX + _sha(orjson.dumps([url, list(include), list(exclude)]))


def result_key(owner: str, content_hash: str, job: ScrapeJob) -> str:
    # The owner is part of the key: one user's paid answer is never served to another.
    # The selectors change what the page's content is: another answer, another key.
    what = orjson.dumps(
        [
            content_hash,
            job.model,
            (job.prompt or "").strip(),
            job.schema,
            list(job.include_selectors),
            list(job.exclude_selectors),
        ],
        option=orjson.OPT_SORT_KEYS,
    )
    return f"{RESULT_PREFIX}{quote(owner, safe='')}:{_sha(what)}"


def _page_entry(page: ExtractedPage, fetched: dict[str, Any]) -> dict[str, Any]:
    return {
        **fetched,
        "title": page.title,
        "markdown": page.markdown,
        "metadata": page.metadata(),
        "links": page.links[:MAX_LINKS_IN_RESULT],
        "content_hash": _sha(page.markdown),
    }


async def _load_page(job: ScrapeJob, deps: ScrapeDeps, progress: Progress) -> tuple[dict[str, Any], bool]:
    max_age = deps.default_max_age if job.max_age is None else job.max_age
    key = page_key(job.url, job.include_selectors, job.exclude_selectors)
    if max_age > 0 and not job.private:
        raw = await deps.redis.get(key)
        if raw is not None:
            entry: dict[str, Any] = orjson.loads(raw)
            if time.time() - float(entry["fetched_ts"]) <= max_age:
                return entry, True
    await progress(1, 4, "fetching")
    try:
        fetched = await deps.fetcher.fetch(job.url, job.headers)
    except FetchError as exc:
        raise ScrapeError(
            str(exc), code=exc.code, retryable=exc.retryable, retry_after=exc.retry_after
        ) from None
    await progress(2, 4, "extracting")
    page, page_warnings = await _extract_page(job, fetched.body, fetched.content_type, fetched.final_url)
    entry = _page_entry(
        page,
        {
            "final_url": fetched.final_url,
            "status_code": fetched.status_code,
            "content_type": fetched.content_type,
            "fetched_at": fetched.fetched_at,
            "fetched_ts": time.time(),
            "warnings": page_warnings,
        },
    )
    if deps.page_cache_ttl > 0 and not job.private:
        await deps.redis.set(key, orjson.dumps(entry), ex=deps.page_cache_ttl)
    return entry, False


async def _extract_page(
    job: ScrapeJob, body: bytes, content_type: str | None, url: str
) -> tuple[ExtractedPage, list[str]]:
    """The fetched body as markdown: PDF text, or HTML narrowed by the job's selectors first."""
    selectors = bool(job.include_selectors or job.exclude_selectors)
    if is_pdf(content_type, body):
        try:
            text = await read_pdf(body)
        except PdfError as exc:
            raise ScrapeError(str(exc), code=exc.code) from None
        page = ExtractedPage(kind=ContentKind.TEXT, markdown=pdf_markdown(text), title=text.title)
        warnings = list(text.warnings)
        if selectors:
            warnings.append("include_selectors and exclude_selectors apply to HTML pages; this is a PDF.")
        return page, warnings
    if not selectors:
        return _extract(body, content_type, url), []
    if not is_html(content_type, body):
        return _extract(body, content_type, url), [
            "include_selectors and exclude_selectors apply to HTML pages; this page is not HTML."
        ]
    html, _ = decode_body(body, content_type)
    try:
        narrowed = apply_selectors(html, job.include_selectors, job.exclude_selectors)
    except NoSelectorMatch as exc:
        raise ScrapeError(str(exc), code="no_selector_match") from None
    return _extract(narrowed, "text/html; charset=utf-8", url), []


def _extract(body: bytes | str, content_type: str | None, url: str) -> ExtractedPage:
    try:
        return extract(body, content_type, url)
    except NonContentError as exc:
        raise ScrapeError(str(exc), code=exc.reason.value) from None
    except UnsupportedContentError as exc:
        raise ScrapeError(str(exc), code="unsupported_content") from None


async def scrape(
    job: ScrapeJob,
    deps: ScrapeDeps,
    api_key: KeyProvider,
    progress: Progress,
    guard: SpendGuard | None = None,
) -> dict[str, Any]:
    """Run one scrape; raise ScrapeError with a sentence for the owner when it cannot finish.

    `guard` meters the model calls when the server pays for them (budget.OwnerMeter).
    """
    if job.schema is not None:
        # Checked at submission too; again here for anything queued past that check.
        try:
            check_schema(job.schema)
        except SchemaInvalidError as exc:
            raise ScrapeError(str(exc), code="invalid_schema") from None
    try:
        entry, page_cached = await _load_page(job, deps, progress)
    except ScrapeError as exc:
        SCRAPE_PAGES.labels(exc.code).inc()  # a bounded set of codes, never the URL
        raise
    SCRAPE_PAGES.labels("cached" if page_cached else "fetched").inc()
    markdown: str = entry["markdown"]
    warnings: list[str] = list(entry.get("warnings") or [])
    shown_markdown = markdown
    if len(shown_markdown) > deps.max_markdown_chars:
        shown_markdown = shown_markdown[: deps.max_markdown_chars]
        warnings.append(f"The markdown in this result is cut to {deps.max_markdown_chars} characters.")

    rkey = result_key(job.owner, entry["content_hash"], job)
    use_result_cache = deps.result_cache_ttl > 0 and not job.private
    cached_answer = await deps.redis.get(rkey) if use_result_cache else None
    if cached_answer is not None:
        answer: dict[str, Any] = orjson.loads(cached_answer)
        usage = {"prompt_tokens": 0, "completion_tokens": 0}  # nothing was spent this time
        result_cached = True
    else:
        key = await api_key()
        total_hint = 4

        async def on_model(k: int, n: int) -> None:
            nonlocal total_hint
            total_hint = 3 + n
            await progress(2 + k, total_hint, f"model {k}/{n}")

        await progress(3, total_hint, "model 0/1")
        try:
            outcome = await run_model(
                api_key=key,
                model=job.model,
                page=PageInput(url=entry["final_url"], title=entry["title"], markdown=markdown),
                config=deps.model_config,
                prompt=job.prompt,
                schema=job.schema,
                on_progress=on_model,
                guard=guard,
            )
        except ModelError as exc:
            raise ScrapeError(
                str(exc),
                code=exc.code,
                retryable=exc.retryable,
                retry_after=exc.retry_after,
                usage=exc.usage.as_dict() if exc.usage is not None else None,
            ) from None
        answer = {
            "summary": outcome.summary,
            "extraction": outcome.extraction,
            "warnings": outcome.warnings,
            "chunks": outcome.chunks,
        }
        usage = outcome.usage.as_dict()
        result_cached = False
        if use_result_cache:
            await deps.redis.set(rkey, orjson.dumps(answer), ex=deps.result_cache_ttl)

    result: dict[str, Any] = {
        "url": job.url,
        "final_url": entry["final_url"],
        "status_code": entry["status_code"],
        "title": entry["title"],
        "markdown": shown_markdown,
    }
    if job.schema is not None:
        result["extraction"] = answer["extraction"]
    else:
        result["summary"] = answer["summary"]
    cost = estimated_cost_usd(job.model, usage["prompt_tokens"], usage["completion_tokens"])
    result.update(
        {
            "model": job.model,
            "usage": usage if cost is None else {**usage, "estimated_cost_usd": cost},
            "fetched_at": entry["fetched_at"],
            "from_cache": page_cached or result_cached,
            "cache": {"page": page_cached, "result": result_cached},
            "metadata": entry["metadata"],
            "links": entry["links"],
            "warnings": warnings + list(answer.get("warnings") or []),
        }
    )
    return result
