"""Quiet hours on the wall clock of the user's zone: the clock is the argument here."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from notification_service.preferences import Preferences, QuietHours, quiet_until

PARIS = QuietHours(start="22:00", end="07:00", timezone="Europe/Paris")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_a_window_spanning_midnight_ends_the_next_local_morning() -> None:
    # 23:30 in Paris (CET, +01:00) on 15 January: quiet until 07:00 Paris, 06:00 UTC.
    assert quiet_until(PARIS, utc(2026, 1, 15, 22, 30)) == utc(2026, 1, 16, 6, 0)
    # 03:00 Paris: the same night, ends that morning.
    assert quiet_until(PARIS, utc(2026, 1, 16, 2, 0)) == utc(2026, 1, 16, 6, 0)
    # 07:00 sharp and 21:59 Paris are outside.
    assert quiet_until(PARIS, utc(2026, 1, 16, 6, 0)) is None
    assert quiet_until(PARIS, utc(2026, 1, 16, 20, 59)) is None


def test_the_end_follows_daylight_saving_time() -> None:
    # Night of 28-29 March 2026: Paris moves from +01:00 to +02:00 at 02:00 local.
    # 23:00 Paris on the 28th is 22:00 UTC; 07:00 Paris on the 29th is 05:00 UTC (not 06:00).
    assert quiet_until(PARIS, utc(2026, 3, 28, 22, 0)) == utc(2026, 3, 29, 5, 0)
    # Back in October (25th): 07:00 Paris is 06:00 UTC again.
    assert quiet_until(PARIS, utc(2026, 10, 24, 22, 0)) == utc(2026, 10, 25, 6, 0)


def test_a_daytime_window_and_another_zone() -> None:
    lunch = QuietHours(start="12:00", end="13:30", timezone="Asia/Kolkata")  # +05:30
    assert quiet_until(lunch, utc(2026, 6, 1, 7, 0)) == utc(2026, 6, 1, 8, 0)
    assert quiet_until(lunch, utc(2026, 6, 1, 8, 0)) is None
    assert quiet_until(lunch, utc(2026, 6, 1, 6, 29)) is None
    assert quiet_until(None, utc(2026, 6, 1, 7, 0)) is None


@pytest.mark.parametrize(
    "quiet",
    [
        {"start": "24:00", "end": "07:00", "timezone": "UTC"},
        {"start": "7:00", "end": "08:00", "timezone": "UTC"},
        {"start": "07:00", "end": "07:00", "timezone": "UTC"},
        {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"},
        {"start": "22:00", "end": "07:00", "timezone": "../../../etc/passwd"},
        {"start": "22:00", "end": "07:00", "timezone": "+02:00"},
        {"start": "22:00", "end": "07:00"},
    ],
)
def test_invalid_quiet_hours_are_refused(quiet: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Preferences.model_validate({"quiet_hours": quiet})
