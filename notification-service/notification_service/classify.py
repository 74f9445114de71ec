"""One classifier for every channel's answer, and the retry schedule that follows from it.

delivered: 2xx. gone: 404/410 from a push service (the subscription is dead: prune it),
410 from a webhook receiver (it asks us to stop: disable the device). retry: 408, 429,
5xx, timeouts and connection errors, honouring Retry-After, with jittered exponential
backoff, until the notification's TTL has passed. failed: every other answer, 400, 401,
403 and 413 included, and no pruning: a bad VAPID key must not wipe every subscription.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from shared import parse_retry_after


class Channel(StrEnum):
    WEBPUSH = "webpush"
    WEBHOOK = "webhook"


class Outcome(StrEnum):
    DELIVERED = "delivered"
    GONE = "gone"
    RETRY = "retry"
    FAILED = "failed"


class TransportError(StrEnum):
    """What went wrong when there is no HTTP status to look at."""

    TIMEOUT = "timeout"
    CONNECT = "connect_error"
    # The outbound rules refused the address (SSRF): retrying cannot help.
    BLOCKED = "blocked"
    # The answer was not HTTP we could read, or a redirect loop.
    PROTOCOL = "protocol_error"


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    reason: str
    retry_after: float | None = None


# Seconds: the first retry waits about BASE, each next one twice as long, never over CAP.
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 15 * 60.0
# Whatever the TTL, stop after this many attempts: the ledger must end.
MAX_ATTEMPTS = 20

_RETRY_STATUSES = frozenset({408, 425, 429})


def classify(
    channel: Channel | str,
    status: int | None = None,
    *,
    error: TransportError | None = None,
    retry_after: str | None = None,
    now: float | None = None,
) -> Verdict:
    """Map one attempt's result to delivered / gone / retry / failed."""
    chan = Channel(channel)
    if status is None:
        if error in (TransportError.TIMEOUT, TransportError.CONNECT):
            return Verdict(Outcome.RETRY, str(error))
        if error is None:
            return Verdict(Outcome.FAILED, "no answer")
        return Verdict(Outcome.FAILED, str(error))
    if 200 <= status < 300:
        return Verdict(Outcome.DELIVERED, f"http {status}")
    if chan is Channel.WEBPUSH and status in (404, 410):
        return Verdict(Outcome.GONE, f"http {status}: subscription expired or unsubscribed")
    if chan is Channel.WEBHOOK and status == 410:
        return Verdict(Outcome.GONE, "http 410: receiver asked to stop")
    if status in _RETRY_STATUSES or 500 <= status < 600:
        return Verdict(Outcome.RETRY, f"http {status}", retry_after=parse_retry_after(retry_after, now=now))
    return Verdict(Outcome.FAILED, f"http {status}")


def backoff_delay(
    attempt: int,
    *,
    retry_after: float | None = None,
    base: float = BACKOFF_BASE_SECONDS,
    cap: float = BACKOFF_CAP_SECONDS,
    rand: Callable[[], float] = random.random,
) -> float:
    """Delay before retry number `attempt` (1 = the first retry): equal-jitter exponential.

    Half the exponential step is fixed and half random, so retries of a batch spread
    out without any of them coming back at once. A Retry-After is a floor.
    """
    step = min(cap, base * (2.0 ** max(0, attempt - 1)))
    delay = step / 2 + rand() * step / 2
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def next_retry_delay(
    verdict: Verdict,
    attempts_made: int,
    *,
    deadline: float,
    now: float | None = None,
    base: float = BACKOFF_BASE_SECONDS,
    cap: float = BACKOFF_CAP_SECONDS,
    max_attempts: int = MAX_ATTEMPTS,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds until the next attempt, or None when the TTL (deadline) would have passed."""
    if verdict.outcome is not Outcome.RETRY:
        return None
    if attempts_made >= max_attempts:
        return None
    current = time.time() if now is None else now
    delay = backoff_delay(attempts_made, retry_after=verdict.retry_after, base=base, cap=cap, rand=rand)
    if current + delay > deadline:
        return None
    return delay
