"""The thin Celery task: resolve the key, run scrape() on the worker runtime's loop, map the outcome.

The task's arguments are plain JSON and hold no secret: the user's OpenAI key travels as
`key_ref`, a reference to ciphertext in Redis (keyvault.py). The reference is deleted when the
task reaches a final state; it is kept (and its TTL extended) only across a retry.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from celery.exceptions import Retry, SoftTimeLimitExceeded
from redis.asyncio import Redis

from shared import (
    Allowlist,
    OutboundClient,
    PlatformTask,
    PublicTaskError,
    TaskCancelled,
    create_async_redis,
    report_progress,
    worker_runtime,
)

from .budget import OwnerMeter, ServerKeyBudget
from .fetch import Fetcher
from .keyvault import KeyVault, KeyVaultError, forget_secret, remember_secret, scrub
from .politeness import HostThrottle
from .request_headers import HEADERS_PURPOSE, open_headers, secret_values
from .robots import RobotsCache
from .scrape import ScrapeDeps, ScrapeError, ScrapeJob, scrape
from .settings import ScrapingSettings
from .worker import app, settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Runtime:
    """Clients for one worker process, made after the fork, used on the worker runtime's loop."""

    redis: Redis
    vault: KeyVault
    header_vault: KeyVault
    deps: ScrapeDeps
    budget: ServerKeyBudget


def build_deps(settings: ScrapingSettings, redis: Redis) -> ScrapeDeps:
    client = OutboundClient(
        Allowlist.parse(settings.outbound_allowlist),
        allow_private=settings.scrape_allow_private,
        connect_timeout=settings.scrape_connect_timeout_seconds,
        timeout=settings.scrape_timeout_seconds,
        user_agent=settings.scrape_user_agent,
    )
    throttle = HostThrottle(redis, settings.throttle_policy())
    fetcher = Fetcher(
        client,
        throttle,
        None,
        user_agent=settings.scrape_user_agent,
        max_bytes=settings.scrape_max_body_bytes,
        timeout_s=settings.scrape_timeout_seconds,
        max_redirects=settings.scrape_max_redirects,
    )
    if settings.scrape_respect_robots:
        fetcher.robots = RobotsCache(
            redis,
            fetcher.fetch_robots,
            settings.scrape_user_agent,
            ttl_seconds=settings.scrape_robots_ttl_seconds,
        )
    return ScrapeDeps(
        redis=redis,
        fetcher=fetcher,
        model_config=settings.model_config_for_calls(),
        default_max_age=settings.scrape_default_max_age,
        page_cache_ttl=settings.scrape_page_cache_ttl_seconds,
        result_cache_ttl=settings.scrape_result_cache_ttl_seconds,
        max_markdown_chars=settings.scrape_max_markdown_chars,
    )


def _make_runtime() -> _Runtime:
    redis = create_async_redis(settings)
    deps = build_deps(settings, redis)
    worker_runtime.on_shutdown(redis.aclose)
    worker_runtime.on_shutdown(deps.fetcher.client.aclose)
    return _Runtime(
        redis=redis,
        vault=KeyVault(redis, settings.secret_key, settings.scrape_key_ttl_seconds),
        header_vault=KeyVault(
            redis, settings.secret_key, settings.scrape_key_ttl_seconds, purpose=HEADERS_PURPOSE
        ),
        deps=deps,
        budget=ServerKeyBudget(redis, settings.openai_server_key_daily_tokens_per_user),
    )


runtime = worker_runtime.process_local(_make_runtime)


def _progress_reporter(task: PlatformTask, seq: Iterator[int]) -> Callable[[int, int, str], Awaitable[None]]:
    """`report_progress` for the scrape, which runs on the runtime's thread: Celery's
    `task.request` is thread-local, so the task id is read here, on the task's thread."""
    tid = task.request.id
    records = task.records

    async def progress(current: int, total: int, message: str) -> None:
        if tid is None:  # called directly, outside a worker
            return
        task.call(records.progress(tid, current, total, message, next(seq)))
        if task.call(records.is_cancelled(tid)):
            raise TaskCancelled()

    return progress


class RetryableScrapeError(PublicTaskError):
    """A scrape failure a later attempt may fix: retried per the submission's policy."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _retry_countdown(exc: ScrapeError, retries: int) -> float:
    if exc.retry_after is not None:
        return min(max(exc.retry_after, 1.0), 900.0)
    return min(300.0, 10.0 * 2.0**retries) * (0.75 + random.random() / 2)


def _without(value: Any, secrets: list[str]) -> Any:
    """The result with every header value of 8+ characters replaced (shorter ones are too
    common to remove from page text without mangling it)."""
    if isinstance(value, str):
        for secret in secrets:
            if len(secret) >= 8:
                value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {k: _without(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_without(v, secrets) for v in value]
    return value


class ScrapeTask(PlatformTask):
    abstract = True
    secret_kwargs = frozenset({"key_ref", "headers_ref"})


@app.task(name="scraping.scrape_page", bind=True, base=ScrapeTask, max_retries=None)
def scrape_page(
    self: ScrapeTask,
    url: str,
    model: str,
    owner: str,
    prompt: str | None = None,
    schema: dict[str, Any] | None = None,
    max_age: int | None = None,
    key_ref: str | None = None,
    include_selectors: list[str] | None = None,
    exclude_selectors: list[str] | None = None,
    headers_ref: str | None = None,
) -> dict[str, Any]:
    rt = runtime()
    # Progress from a retried delivery must outrank the earlier delivery's (older seq loses).
    attempts_before = int((getattr(self.request, "platform_record", None) or {}).get("attempts") or 0)
    seq = itertools.count(1 + 10_000 * (self.request.retries + attempts_before))
    progress = _progress_reporter(self, seq)
    secrets = _TaskSecrets(rt, key_ref, headers_ref)
    try:
        job = ScrapeJob(
            url=url,
            model=model,
            owner=owner,
            prompt=prompt,
            schema=schema,
            max_age=max_age,
            include_selectors=tuple(include_selectors or ()),
            exclude_selectors=tuple(exclude_selectors or ()),
            headers=worker_runtime.run(secrets.headers()),
        )
        # The server's key is metered per user and day; a user's own key is theirs to spend.
        guard = None if key_ref else OwnerMeter(rt.budget, owner)
        result = worker_runtime.run(scrape(job, rt.deps, secrets.api_key, progress, guard))
        if job.headers:
            # A page may echo what it was sent; the result store must not hold it either.
            result = _without(result, secret_values(job.headers))
        report_progress(self, 1, 1, "done", seq=next(seq) + 1000)
        return result
    except ScrapeError as exc:
        raise _failure(self, exc, secrets) from None
    except (TaskCancelled, Retry):
        raise
    except SoftTimeLimitExceeded:
        raise  # FAILURE with error.type TimeLimitExceeded (shared error_view)
    except Exception:
        # Unknown failures are logged (scrubbed) for operators; the result store gets no text of
        # theirs, since an exception message could quote anything, a key included.
        log.exception("scrape failed unexpectedly")
        raise PublicTaskError("The scrape failed with an internal error.") from None
    finally:
        secrets.close()


class _TaskSecrets:
    """One task's sealed OpenAI key and request headers: opened when the scrape asks, scrubbed
    from its messages, forgotten when it ends, and their references deleted then unless a retry
    will need them (keep_for)."""

    __slots__ = ("header_vault", "headers_ref", "keep", "key_ref", "plaintext", "vault")

    def __init__(self, rt: _Runtime, key_ref: str | None, headers_ref: str | None) -> None:
        self.vault = rt.vault
        self.header_vault = rt.header_vault
        self.key_ref = key_ref
        self.headers_ref = headers_ref
        self.plaintext: list[str] = []
        self.keep = False

    def _opened(self, value: str) -> None:
        self.plaintext.append(value)
        remember_secret(value)

    async def api_key(self) -> str:
        if self.key_ref:
            try:
                key = await self.vault.get(self.key_ref)
            except KeyVaultError as exc:
                raise ScrapeError(str(exc), code="key_unavailable") from None
            self._opened(key)
            return key
        if settings.openai_api_key:
            return settings.openai_api_key
        raise ScrapeError(
            "No OpenAI key: the request had none and the server has no OPENAI_API_KEY.",
            code="key_missing",
        )

    async def headers(self) -> dict[str, str] | None:
        if not self.headers_ref:
            return None
        try:
            opened = await open_headers(self.header_vault, self.headers_ref)
        except KeyVaultError as exc:
            raise ScrapeError(str(exc), code="headers_unavailable") from None
        for value in secret_values(opened):
            self._opened(value)
        return opened

    def scrub(self, text: str) -> str:
        return scrub(text, self.plaintext)

    def _refs(self) -> list[tuple[KeyVault, str]]:
        pairs = ((self.vault, self.key_ref), (self.header_vault, self.headers_ref))
        return [(vault, ref) for vault, ref in pairs if ref]

    def keep_for(self, seconds: int) -> None:
        """A retry comes after `seconds`: the references outlive it by the usual TTL."""
        self.keep = True
        for vault, ref in self._refs():
            worker_runtime.run(vault.extend(ref, seconds + settings.scrape_key_ttl_seconds))

    def close(self) -> None:
        for value in self.plaintext:
            forget_secret(value)
        if self.keep:
            return
        for vault, ref in self._refs():
            try:
                worker_runtime.run(vault.delete(ref))
            except Exception:  # the TTL removes it anyway
                log.warning("could not delete a secret reference of a finished task")


def _failure(task: ScrapeTask, exc: ScrapeError, secrets: _TaskSecrets) -> PublicTaskError:
    """What a failed scrape raises, its message scrubbed of the task's secrets: a retry per the
    submission's policy (RetryableScrapeError: the next attempt waits in the fair queue's delayed
    set), else Celery's own retry (task.retry raises), else a final PublicTaskError."""
    message = secrets.scrub(str(exc))
    record = getattr(task.request, "platform_record", None) or {}
    policy = record.get("retry")
    if exc.retryable and isinstance(policy, dict):
        if int(record.get("attempts") or 0) + 1 < int(policy.get("max_attempts", 1)):
            # The sealed key and headers must outlive the wait.
            secrets.keep_for(int(max(float(policy.get("max_seconds", 60)), exc.retry_after or 0)) + 1)
        return RetryableScrapeError(message, retry_after=exc.retry_after)
    if exc.retryable and task.request.retries < settings.scrape_task_max_retries:
        countdown = _retry_countdown(exc, task.request.retries)
        secrets.keep_for(int(countdown))
        raise task.retry(countdown=countdown, exc=PublicTaskError(message))
    return PublicTaskError(message)
