"""beat's health, kept in a file beside its schedule: `python -m task_service.beat_health SCHEDULE`.

beat serves no port. It writes `<schedule>.health` on every tick: whether its start-up check
and then its last send succeeded. The check exits 0 when that state is ok and fresh, 1 when
beat cannot send or has stopped ticking. Standard library only: the check runs every 30 s in
the container and must not pay for importing Celery.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

# beat ticks at least every 30 s (task_service.beat.MAX_LOOP_INTERVAL); four missed ticks
# mean it is hung or gone.
HEALTH_STALE_SECONDS = 120.0


def health_path(schedule_filename: str) -> Path:
    return Path(f"{schedule_filename}.health")


def write_health(path: Path, ok: bool, error: str | None = None) -> None:
    """Replace the health file atomically, so the check never reads half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"ok": ok, "at": time.time(), "error": error}))
    tmp.replace(path)


def read_health(path: Path, now: float | None = None) -> tuple[bool, str]:
    """(healthy, why) from the health file beat writes."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return False, f"no health state at {path}: {exc}"
    age = (time.time() if now is None else now) - float(state.get("at", 0))
    if age > HEALTH_STALE_SECONDS:
        return False, f"beat has not ticked for {age:.0f}s"
    if not state.get("ok"):
        return False, f"beat cannot send: {state.get('error')}"
    return True, "ok"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m task_service.beat_health SCHEDULE_FILE", file=sys.stderr)
        return 2
    healthy, why = read_health(health_path(args[0]))
    print(why, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
