"""The LLM client: one OpenAI-compatible chat call, with our error mapping, retries and usage.

`ModelClient.complete()` is one answer to one list of messages. What a page is cut into and
how the answers are combined is `mapreduce.py`'s job.

Retries are done here, not by the openai client (max_retries=0) and not by re-queueing the
Celery task:
- a long page is several calls; retrying one call keeps the chunks already answered, where a
  task retry would pay for all of them again;
- Retry-After is honoured exactly (the openai client caps and jitters it); retry-after-ms is
  read first, then Retry-After through the one shared parser (`shared.parse_retry_after`);
- the user's key stays in this process's memory for one bounded stretch, rather than sitting
  in Redis across re-deliveries.
When the provider asks for a longer wait than we are willing to hold a worker slot for
(`max_retry_after_s`), ModelUnavailableError carries `retry_after` and the task layer may
schedule a later retry.

Provider errors become ModelError subclasses with a stable `code`: 401/403/no quota are
ModelAuthError (never retried), other 4xx ModelRequestError, 429/408/409/5xx, timeouts and
connection errors are retried and end as ModelUnavailableError. A context-length refusal is
ContextTooLongError, for the caller to cut the input. Every message that leaves this module
has been through `scrub()` with the key in use.

Each call's usage is added to the client's `Usage`, to the OPENAI_TOKENS metric (by model,
with a bounded set of labels) and to the optional SpendGuard that meters the server's key.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from dataclasses import dataclass
from typing import Any, Protocol

import openai
from openai import AsyncOpenAI

from shared import OPENAI_TOKENS, parse_retry_after

from .keyvault import scrub

__all__ = [
    "Completion",
    "ContextTooLongError",
    "ModelAuthError",
    "ModelBudgetError",
    "ModelClient",
    "ModelConfig",
    "ModelError",
    "ModelOutputError",
    "ModelRequestError",
    "ModelUnavailableError",
    "SpendGuard",
    "Usage",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """How calls are made: endpoint, timeouts, retry policy, and the map-reduce limits."""

    base_url: str | None = None
    timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    max_attempts: int = 4
    backoff_base_s: float = 1.0
    backoff_max_s: float = 20.0
    max_retry_after_s: float = 60.0
    # Tokens of page text per request; the prompt, schema and reply come on top.
    chunk_tokens: int = 8000
    max_output_tokens: int = 1500
    max_chunks: int = 24
    concurrency: int = 3
    temperature: float | None = 0.0


@dataclass(slots=True)
class Usage:
    """Tokens spent so far, as the provider reported them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: Any) -> None:
        if other is None:
            return
        self.prompt_tokens += int(getattr(other, "prompt_tokens", 0) or 0)
        self.completion_tokens += int(getattr(other, "completion_tokens", 0) or 0)

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


class ModelError(Exception):
    """A model call failed; `retryable` says whether trying later may help."""

    code = "model_error"
    retryable = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        # What was spent before the failure, so the task can report it.
        self.usage: Usage | None = None


class ModelAuthError(ModelError):
    code = "model_auth_failed"


class ModelRequestError(ModelError):
    code = "model_request_rejected"


class ModelOutputError(ModelError):
    code = "model_output_invalid"


class ModelUnavailableError(ModelError):
    code = "model_unavailable"
    retryable = True


class ModelBudgetError(ModelError):
    code = "model_budget_exceeded"


class SpendGuard(Protocol):
    """Meters calls on a key someone else pays for (budget.OwnerMeter): may refuse the next one."""

    async def before_call(self) -> None: ...  # raises ModelBudgetError when nothing is left

    async def spent(self, tokens: int) -> None: ...


class ContextTooLongError(Exception):
    """The provider refused the input as longer than the model's context: cut it and ask again."""


@dataclass(slots=True)
class Completion:
    """One answer: its text, why it stopped ("length" when cut off) and any refusal."""

    content: str
    finish_reason: str | None
    refusal: str | None


def _retry_after(exc: openai.APIStatusError) -> float | None:
    headers = exc.response.headers
    raw_ms = headers.get("retry-after-ms")  # OpenAI's own, finer than Retry-After
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


def _provider_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    message: Any = None
    if isinstance(body, dict):
        err = body.get("error", body)
        message = err.get("message") if isinstance(err, dict) else err
    if not message:
        message = exc.message
    return " ".join(str(message).split())[:300]


def _provider_code(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("code") or err.get("type") or "")
    return ""


_BASE_CLIENTS: dict[tuple[int, int, str | None, float, float], AsyncOpenAI] = {}
# Never sent: every request goes through a copy made with the task's own key.
_PLACEHOLDER_KEY = "sk-placeholder-never-sent"


def _base_client(config: ModelConfig) -> AsyncOpenAI:
    """One AsyncOpenAI (and so one connection pool and TLS context) per process, loop and config.

    Building a client costs ~17 ms (its TLS context); a per-key copy made with with_options()
    shares the pool and costs microseconds.
    """
    ident = (
        os.getpid(),
        id(asyncio.get_running_loop()),
        config.base_url,
        config.timeout_s,
        config.connect_timeout_s,
    )
    client = _BASE_CLIENTS.get(ident)
    if client is None:
        client = AsyncOpenAI(
            api_key=_PLACEHOLDER_KEY,
            base_url=config.base_url or None,
            max_retries=0,
            timeout=openai.Timeout(config.timeout_s, connect=config.connect_timeout_s),
        )
        _BASE_CLIENTS[ident] = client
    return client


# Model names are the caller's (bounded by SCRAPE_ALLOWED_MODELS only when it is set): past
# this many in one process, further names are counted as "other", so a permissive provider
# cannot be used to grow the metrics without bound.
MAX_MODEL_LABELS = 50
_model_labels: set[str] = set()


def _count_tokens(model: str, usage: Any) -> None:
    """What one call spent, for the dashboard, by the model asked for. Only a call the
    provider answered with usage adds a series."""
    if model not in _model_labels:
        if len(_model_labels) >= MAX_MODEL_LABELS:
            model = "other"
        else:
            _model_labels.add(model)
    for kind in ("prompt", "completion"):
        tokens = int(getattr(usage, f"{kind}_tokens", 0) or 0) if usage is not None else 0
        if tokens > 0:
            OPENAI_TOKENS.labels(model, kind).inc(tokens)


class ModelClient:
    """The shared AsyncOpenAI client with one task's key, and our own retry policy."""

    def __init__(self, api_key: str, config: ModelConfig, guard: SpendGuard | None = None) -> None:
        self._key = api_key
        self.guard = guard
        self.config = config
        self._client = _base_client(config).with_options(api_key=api_key, max_retries=0)
        self.usage = Usage()
        self.calls = 0

    async def aclose(self) -> None:
        # The connection pool is shared with later tasks; only this copy (and its key) goes.
        del self._client

    async def __aenter__(self) -> ModelClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def scrub(self, text: str) -> str:
        """The text with this client's key taken out, fit to leave the module."""
        return scrub(text, [self._key])

    def _backoff(self, attempt: int) -> float:
        base = min(self.config.backoff_max_s, self.config.backoff_base_s * 2.0 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)

    async def complete(
        self,
        model: str,
        messages: list[dict[str, str]],
        *,
        response_format: dict[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        """One answer, retried on what may pass; a ModelError (or ContextTooLongError) otherwise."""
        attempt = 0
        while True:
            attempt += 1
            delay: float
            hint: float | None = None
            try:
                return await self._once(model, messages, response_format, max_tokens)
            except openai.AuthenticationError:
                raise ModelAuthError(
                    "The OpenAI API rejected the key (401 Unauthorized): check the openai_key "
                    "you sent, or the server's OPENAI_API_KEY."
                ) from None
            except openai.PermissionDeniedError as exc:
                raise ModelAuthError(
                    self.scrub(
                        "The OpenAI API refused this key for the request (403 Forbidden): "
                        + _provider_message(exc)
                    )
                ) from None
            except openai.RateLimitError as exc:
                if _provider_code(exc) == "insufficient_quota":
                    raise ModelAuthError(
                        "The OpenAI account behind this key has no quota left (429 insufficient_quota)."
                    ) from None
                hint = _retry_after(exc)
                reason = "rate limited (429)"
            except openai.BadRequestError as exc:
                if _provider_code(exc) == "context_length_exceeded":
                    raise ContextTooLongError from None
                raise ModelRequestError(
                    self.scrub(f"The model provider rejected the request (400): {_provider_message(exc)}")
                ) from None
            except openai.APIStatusError as exc:
                if exc.status_code in (408, 409) or exc.status_code >= 500:
                    hint = _retry_after(exc)
                    reason = f"server error ({exc.status_code})"
                else:
                    raise ModelRequestError(
                        self.scrub(
                            f"The model provider rejected the request ({exc.status_code}): "
                            f"{_provider_message(exc)}"
                        )
                    ) from None
            except openai.APITimeoutError:
                reason = "timed out"
            except openai.APIConnectionError:
                reason = "could not be reached"
            except openai.OpenAIError as exc:
                # Anything else the client raises (e.g. a response it cannot parse): permanent.
                raise ModelRequestError(
                    self.scrub(f"The model provider's answer could not be used: {exc}")[:500]
                ) from None
            delay = hint if hint is not None else self._backoff(attempt)
            if attempt >= self.config.max_attempts or delay > self.config.max_retry_after_s:
                raise ModelUnavailableError(
                    f"The model provider {reason} after {attempt} attempt(s); try again later.",
                    retry_after=delay,
                ) from None
            log.warning(
                "model call %s; retrying in %.1fs (attempt %d of %d)",
                reason,
                delay,
                attempt,
                self.config.max_attempts,
            )
            await asyncio.sleep(delay)

    async def _once(
        self,
        model: str,
        messages: list[dict[str, str]],
        response_format: dict[str, Any] | None,
        max_tokens: int | None,
    ) -> Completion:
        kwargs: dict[str, Any] = {"model": model, "messages": messages}
        if response_format is not None:
            kwargs["response_format"] = response_format
        if max_tokens is not None:
            kwargs["max_completion_tokens"] = max_tokens
        if self.config.temperature is not None:
            kwargs["temperature"] = self.config.temperature
        if self.guard is not None:
            await self.guard.before_call()
        response = await self._client.chat.completions.create(**kwargs)
        self.calls += 1
        self.usage.add(response.usage)
        _count_tokens(model, response.usage)
        if self.guard is not None and response.usage is not None:
            used = response.usage
            await self.guard.spent(int(used.prompt_tokens or 0) + int(used.completion_tokens or 0))
        if not response.choices:
            raise ModelOutputError("The model returned no answer.")
        choice = response.choices[0]
        message = choice.message
        return Completion(
            content=message.content or "",
            finish_reason=choice.finish_reason,
            refusal=getattr(message, "refusal", None),
        )
