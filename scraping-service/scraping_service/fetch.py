"""Fetch one page politely and safely.

Every request goes through the shared SSRF-safe client (`shared.OutboundClient`): each hop's host
is resolved once, every address is checked, the connection goes to the checked address, and
redirects are followed by hand (at most SCRAPE_MAX_REDIRECTS). Before the request we consult
robots.txt (cached per origin in Redis) and take a slot from the host's token bucket (shared by
every worker, slowed further by Crawl-delay). A 429/503 with Retry-After cools the host down
for every worker.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from urllib.parse import urlsplit

from shared import (
    BodyTooLarge,
    OutboundClient,
    OutboundError,
    OutboundRefused,
    now_iso,
    parse_retry_after,
)

from .extract import NonContentError, NonContentReason, extract
from .politeness import HostThrottle, PolitenessTimeout
from .robots import MAX_ROBOTS_BYTES, RobotsCache

__all__ = ["FetchError", "FetchedPage", "Fetcher"]

log = logging.getLogger(__name__)

ACCEPT = "text/html,application/xhtml+xml;q=0.9,text/plain;q=0.8,application/json;q=0.8,*/*;q=0.1"


class FetchError(Exception):
    """The page could not be fetched. `retryable` says whether a later try may succeed."""

    def __init__(self, message: str, *, retryable: bool, code: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code
        self.retry_after = retry_after


@dataclass(slots=True)
class FetchedPage:
    url: str
    final_url: str
    status_code: int
    content_type: str | None
    body: bytes
    fetched_at: str
    redirects: list[str]


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


@dataclass(eq=False)
class Fetcher:
    client: OutboundClient
    throttle: HostThrottle
    robots: RobotsCache | None
    _: KW_ONLY
    user_agent: str
    max_bytes: int
    timeout_s: float
    max_redirects: int

    async def fetch_robots(self, robots_url: str) -> tuple[int, str]:
        """GET robots.txt through the same safe client; network failures become OSError."""
        try:
            await self.throttle.acquire(_host(robots_url))
            response = await self.client.get(
                robots_url,
                headers={"User-Agent": self.user_agent, "Accept": "text/plain"},
                max_bytes=MAX_ROBOTS_BYTES * 4,
                max_redirects=self.max_redirects,
                timeout=min(self.timeout_s, 10.0),
            )
        except BodyTooLarge:
            return 200, ""  # unparseable robots.txt: RFC 9309 lets us treat it as no rules
        except OutboundRefused as exc:
            # A robots.txt that redirects somewhere forbidden: treat as unavailable (4xx).
            log.info("robots.txt refused: %s", exc.reason)
            return 404, ""
        except (OutboundError, PolitenessTimeout) as exc:
            raise OSError(str(exc)) from None
        return response.status_code, response.body[:MAX_ROBOTS_BYTES].decode("utf-8", "replace")

    async def _robots_allow(self, url: str) -> float | None:
        if self.robots is None:
            return None
        decision = await self.robots.check(url)
        if not decision.allowed:
            if decision.source == "unreachable":
                raise FetchError(
                    "The site's robots.txt could not be read (server error or unreachable), so "
                    "the page is not fetched for now.",
                    retryable=True,
                    code="robots_unavailable",
                )
            raise FetchError(
                f"The site's robots.txt does not allow {self.user_agent.split('/')[0]} to fetch this URL.",
                retryable=False,
                code="robots_disallowed",
            )
        return decision.crawl_delay

    async def fetch(self, url: str, user_headers: Mapping[str, str] | None = None) -> FetchedPage:
        """GET a page. `user_headers` go to the URL's own origin only, never to robots.txt."""
        crawl_delay = await self._robots_allow(url)
        host = _host(url)
        try:
            await self.throttle.acquire(host, crawl_delay)
        except PolitenessTimeout as exc:
            raise FetchError(str(exc), retryable=True, code="host_busy", retry_after=exc.wait_s) from None
        own = {"User-Agent": self.user_agent, "Accept": ACCEPT, "Accept-Language": "en;q=0.9, *;q=0.5"}
        if user_headers:
            # The user's Accept or Accept-Language replaces ours rather than being sent twice.
            taken = {name.lower() for name in user_headers}
            own = {name: value for name, value in own.items() if name.lower() not in taken}
        try:
            response = await self.client.get(
                url,
                headers=own,
                origin_headers=user_headers or None,
                max_bytes=self.max_bytes,
                max_redirects=self.max_redirects,
                timeout=self.timeout_s,
            )
        except BodyTooLarge:
            raise FetchError(
                f"The page is larger than the {self.max_bytes // (1024 * 1024)} MB limit.",
                retryable=False,
                code="body_too_large",
            ) from None
        except OutboundRefused as exc:
            raise FetchError(
                f"The URL was refused: {exc.reason}.", retryable=False, code="url_not_allowed"
            ) from None
        except OutboundError as exc:
            raise FetchError(
                f"The page could not be fetched: {exc.reason}.", retryable=True, code="fetch_failed"
            ) from None

        if response.redirects and _host(response.final_url) != host and self.robots is not None:
            # The redirect left the first site: its robots.txt has a say too.
            await self._robots_allow(response.final_url)

        status = response.status_code
        content_type = response.headers.get("content-type")
        if status in (429, 503):
            wait = parse_retry_after(response.headers.get("retry-after"))
            if wait is not None:
                await self.throttle.cool_down(_host(response.final_url), wait)
        if status >= 400:
            self._raise_for_status(
                response.body, content_type, response.final_url, status, response.headers.get("retry-after")
            )
        return FetchedPage(
            url=url,
            final_url=response.final_url,
            status_code=status,
            content_type=content_type,
            body=response.body,
            fetched_at=now_iso(),
            redirects=list(response.redirects),
        )

    @staticmethod
    def _raise_for_status(
        body: bytes, content_type: str | None, final_url: str, status: int, retry_after: str | None
    ) -> None:
        # A 403/503 is often a bot challenge: say so rather than just the status.
        if body and content_type and "html" in content_type:
            try:
                extract(body, content_type, final_url)
            except NonContentError as exc:
                if exc.reason is NonContentReason.BOT_CHALLENGE:
                    raise FetchError(str(exc), retryable=False, code="bot_challenge") from None
            except Exception:  # noqa: S110 - only a hint; the status decides below
                pass
        if status in (429, 503) or status >= 500 or status == 408:
            raise FetchError(
                f"The site answered {status}; it will be tried again later.",
                retryable=True,
                code="site_unavailable",
                retry_after=parse_retry_after(retry_after),
            )
        if status in (404, 410):
            raise FetchError(
                f"The page does not exist (the site answered {status}).",
                retryable=False,
                code="page_not_found",
            )
        raise FetchError(
            f"The site refused the request (it answered {status}).",
            retryable=False,
            code="site_refused",
        )
