"""Retry policies set per submission, and which errors are never retried.

A failed attempt that may be retried waits in the fair queue's delayed set (lua/fairq_retry.lua),
not as an ETA message on the broker: a worker would hold that message, and RabbitMQ's consumer
timeout would take it back from a long wait.
"""

from __future__ import annotations

import random
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_ATTEMPTS = 20
MAX_BACKOFF_SECONDS = 900  # below RabbitMQ's consumer timeout, like a countdown
DEFAULT_BACKOFF: Literal["exponential"] = "exponential"
DEFAULT_INITIAL_SECONDS = 1.0
DEFAULT_MAX_SECONDS = 60.0


class NonRetryable(Exception):
    """Marker base: an error that trying again cannot fix (a validation error, a rejected key,
    a 4xx page). Any exception whose `retryable` attribute is false is treated the same."""

    retryable = False


def is_retryable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retryable", True))


class RetryPolicy(BaseModel):
    """What a submission may ask for; fields left out take the task type's defaults."""

    model_config = ConfigDict(extra="forbid")
    max_attempts: int | None = Field(
        default=None, ge=1, le=MAX_ATTEMPTS, description="Attempts in all, first included (1-20)."
    )
    backoff: Literal["exponential", "fixed"] = Field(
        default=DEFAULT_BACKOFF,
        description="exponential: initial_seconds doubled each time; fixed: the same wait.",
    )
    initial_seconds: float = Field(default=DEFAULT_INITIAL_SECONDS, ge=0, le=MAX_BACKOFF_SECONDS)
    max_seconds: float = Field(default=DEFAULT_MAX_SECONDS, ge=0, le=MAX_BACKOFF_SECONDS)
    jitter: bool = Field(default=True, description="Wait a random 50-100% of the computed time.")


def resolve_policy(policy: RetryPolicy | None, default_max_attempts: int) -> dict[str, Any]:
    """The policy a task runs with: the submission's fields over the task type's defaults."""
    p = policy or RetryPolicy()
    return {
        "max_attempts": p.max_attempts or default_max_attempts,
        "backoff": p.backoff,
        "initial_seconds": p.initial_seconds,
        "max_seconds": max(p.max_seconds, 0.0),
        "jitter": p.jitter,
    }


def retry_delay(policy: dict[str, Any], failed_attempt: int) -> float:
    """Seconds to wait after attempt `failed_attempt` (1 for the first) failed."""
    initial = float(policy.get("initial_seconds", DEFAULT_INITIAL_SECONDS))
    cap = float(policy.get("max_seconds", DEFAULT_MAX_SECONDS))
    if policy.get("backoff", DEFAULT_BACKOFF) == "fixed":
        delay = initial
    else:
        delay = initial * 2.0 ** min(failed_attempt - 1, 30)
    delay = min(delay, cap, MAX_BACKOFF_SECONDS)
    if policy.get("jitter", True):
        delay = random.uniform(delay / 2, delay)
    return delay
