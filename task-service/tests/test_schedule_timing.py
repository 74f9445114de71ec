"""When a schedule runs next: cron in a time zone across DST, and the every_seconds grid."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from task_service.schedules import Timing, to_ms

PARIS = ZoneInfo("Europe/Paris")


def at(*args: int) -> int:
    return to_ms(datetime(*args, tzinfo=PARIS).timestamp())


def test_cron_in_paris_runs_at_local_time_and_moves_across_dst_gaps_and_repeats() -> None:
    nightly = Timing("30 2 * * *", "Europe/Paris", None, 0)
    # Spring forward (2026-03-29): 02:30 does not exist, the run is at 03:00 local.
    assert nightly.next_after(at(2026, 3, 28, 12)) == at(2026, 3, 29, 3, 0)
    # Fall back (2026-10-25): 02:30 happens twice, the run happens once.
    first = nightly.next_after(at(2026, 10, 24, 12))
    second = nightly.next_after(first)
    assert second - first == 25 * 3600_000  # the next night, a 25-hour day later
    assert datetime.fromtimestamp(second / 1000, PARIS).hour == 2


def test_every_seconds_keeps_its_grid_and_the_next_run_is_strictly_after_now() -> None:
    t = Timing(None, "UTC", 5, 1_000_000)
    assert t.next_after(1_000_000) == 1_005_000
    assert t.next_after(1_004_999) == 1_005_000
    assert t.next_after(1_005_000) == 1_010_000  # strictly after now
    assert t.next_after(1_037_500) == 1_040_000  # after downtime: one run now-ish, on the grid


def test_missed_ticks_are_counted_not_run() -> None:
    t = Timing(None, "UTC", 5, 0)
    assert t.missed_between(5_000, 5_200) == 0
    assert t.missed_between(5_000, 21_000) == 3  # 10, 15, 20 missed; 5 runs
    hourly = Timing("0 * * * *", "UTC", None, 0)
    assert hourly.missed_between(0, 3 * 3600_000 + 1) == 3
