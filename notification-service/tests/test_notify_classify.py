"""The one classifier: every channel's answers, Retry-After and the retry schedule."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from notification_service.classify import (
    Channel,
    Outcome,
    TransportError,
    Verdict,
    backoff_delay,
    classify,
    next_retry_delay,
)
from shared import MAX_RETRY_AFTER_SECONDS, parse_retry_after

WP, WH = Channel.WEBPUSH, Channel.WEBHOOK


@pytest.mark.parametrize(
    ("channel", "status", "outcome"),
    [
        (WP, 201, Outcome.DELIVERED),
        (WP, 202, Outcome.DELIVERED),
        (WP, 200, Outcome.DELIVERED),
        (WP, 404, Outcome.GONE),
        (WP, 410, Outcome.GONE),
        (WP, 429, Outcome.RETRY),
        (WP, 500, Outcome.RETRY),
        (WP, 502, Outcome.RETRY),
        (WP, 503, Outcome.RETRY),
        (WP, 408, Outcome.RETRY),
        (WP, 400, Outcome.FAILED),
        (WP, 401, Outcome.FAILED),
        (WP, 403, Outcome.FAILED),
        (WP, 413, Outcome.FAILED),
        (WP, 422, Outcome.FAILED),
        (WP, 301, Outcome.FAILED),
        (WH, 200, Outcome.DELIVERED),
        (WH, 204, Outcome.DELIVERED),
        (WH, 410, Outcome.GONE),
        (WH, 404, Outcome.FAILED),
        (WH, 400, Outcome.FAILED),
        (WH, 401, Outcome.FAILED),
        (WH, 403, Outcome.FAILED),
        (WH, 413, Outcome.FAILED),
        (WH, 429, Outcome.RETRY),
        (WH, 500, Outcome.RETRY),
        (WH, 504, Outcome.RETRY),
    ],
)
def test_status_classification(channel: Channel, status: int, outcome: Outcome) -> None:
    assert classify(channel, status).outcome is outcome


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (TransportError.TIMEOUT, Outcome.RETRY),
        (TransportError.CONNECT, Outcome.RETRY),
        (TransportError.BLOCKED, Outcome.FAILED),
        (TransportError.PROTOCOL, Outcome.FAILED),
    ],
)
def test_transport_errors(error: TransportError, outcome: Outcome) -> None:
    for channel in Channel:
        verdict = classify(channel, error=error)
        assert verdict.outcome is outcome
        assert verdict.reason == error.value


def test_retry_after_seconds_and_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after("-5", now=now) is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("99999999", now=now) == MAX_RETRY_AFTER_SECONDS
    verdict = classify(WP, 429, retry_after="7")
    assert verdict.outcome is Outcome.RETRY and verdict.retry_after == 7.0


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    lows = [backoff_delay(n, rand=lambda: 0.0, base=1.0, cap=60.0) for n in range(1, 9)]
    highs = [backoff_delay(n, rand=lambda: 1.0, base=1.0, cap=60.0) for n in range(1, 9)]
    assert lows == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert highs == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert backoff_delay(1, retry_after=10.0, base=1.0) >= 10.0
    # Jitter: real randomness spreads a batch's retries.
    assert len({round(backoff_delay(5, base=1.0), 6) for _ in range(20)}) > 1


def test_retry_stops_when_the_ttl_has_passed() -> None:
    now = 1000.0
    retry = Verdict(Outcome.RETRY, "http 500")
    assert next_retry_delay(retry, 1, deadline=now + 60, now=now, rand=lambda: 0.5) == 1.5
    assert next_retry_delay(retry, 1, deadline=now + 1, now=now, rand=lambda: 0.5) is None
    wait = Verdict(Outcome.RETRY, "http 429", retry_after=120.0)
    assert next_retry_delay(wait, 1, deadline=now + 60, now=now) is None
    assert next_retry_delay(wait, 1, deadline=now + 600, now=now) == 120.0
    assert next_retry_delay(retry, 20, deadline=now + 10**9, now=now) is None
    for outcome in (Outcome.DELIVERED, Outcome.GONE, Outcome.FAILED):
        assert next_retry_delay(Verdict(outcome, ""), 1, deadline=now + 600, now=now) is None
