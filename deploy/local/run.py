"""`make run`: every API, one worker per queue, beat and the scheduler, in the foreground.

Each line of output is prefixed with its process name. A process that dies is started again,
after a pause that doubles from 1 s to 30 s (back to 1 s once it stayed up a minute), and the
restart is logged. Only Ctrl-C or SIGTERM stops them all (each runs in its own process group,
so pool children go too): no orphans.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_DIR = ROOT / ".run"
PY = sys.executable

PROCESSES: list[tuple[str, list[str], dict[str, str]]] = [
    # Metrics on 9100, beside the workers' 9101-9103; the public 8000 serves no /metrics.
    ("gateway", [PY, "-m", "gateway"], {"GATEWAY_METRICS_PORT": "9100"}),
    ("task-api", [PY, "-m", "task_service"], {}),
    ("scraping-api", [PY, "-m", "scraping_service"], {}),
    ("notify-api", [PY, "-m", "notification_service"], {}),
    (
        "task-worker",
        [PY, "-m", "celery", "-A", "task_service.worker", "worker", "-Q", "default", "-n", "task@%h"],
        {"WORKER_METRICS_PORT": "9101"},
    ),
    (
        "scrape-worker",
        [
            PY,
            "-m",
            "celery",
            "-A",
            "scraping_service.worker",
            "worker",
            "-Q",
            "scraping",
            "-n",
            "scraping@%h",
        ],
        {"WORKER_METRICS_PORT": "9102"},
    ),
    (
        "notify-worker",
        [
            PY,
            "-m",
            "celery",
            "-A",
            "notification_service.worker",
            "worker",
            "-Q",
            "notifications",
            "-n",
            "notifications@%h",
        ],
        {"WORKER_METRICS_PORT": "9103"},
    ),
    (
        "beat",
        [PY, "-m", "celery", "-A", "task_service.beat", "beat", "-s", str(RUN_DIR / "celerybeat-schedule")],
        {},
    ),
    # Schedules made through the API; any number may run (each tick is claimed once). It and
    # task-api reach scraping-api and notify-api at SCRAPING_SERVICE_URL /
    # NOTIFICATION_SERVICE_URL, whose defaults are those APIs' ports here (8002, 8003).
    ("scheduler", [PY, "-m", "task_service.scheduler"], {"SCHEDULER_METRICS_PORT": "9104"}),
]
COLORS = [31, 32, 33, 34, 35, 36, 91, 92, 93, 94]

# A process that dies is started again after a pause that doubles from 1 s up to 30 s, and
# falls back to 1 s once the process has stayed up for STABLE_SECONDS.
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
STABLE_SECONDS = 60.0


class Child:
    """One supervised process: its command, its output prefix and its restart schedule."""

    def __init__(self, name: str, argv: list[str], extra: dict[str, str], prefix: str) -> None:
        self.name, self.argv, self.extra, self.prefix = name, argv, extra, prefix
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.delay = BACKOFF_FIRST
        self.restart_at: float | None = None
        self.restarts = 0

    def start(self, sel: selectors.BaseSelector) -> int:
        env = {**os.environ, **self.extra, "PYTHONUNBUFFERED": "1"}
        # Its own process group, so stopping it takes its pool children too.
        self.proc = subprocess.Popen(
            self.argv,
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        sel.register(self.proc.stdout, selectors.EVENT_READ, (self.prefix, bytearray()))
        self.started_at = time.monotonic()
        self.restart_at = None
        return self.proc.pid

    def exited(self, now: float) -> None:
        """It died: reap what is left of its group and schedule the next start."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # orphaned pool processes hold its ports
        if now - self.started_at >= STABLE_SECONDS:
            self.delay = BACKOFF_FIRST
        self.restart_at = now + self.delay
        print(
            f"run: {self.name} (pid {self.proc.pid}) exited with {self.proc.returncode}; "
            f"restarting in {self.delay:g}s",
            flush=True,
        )
        self.delay = min(self.delay * 2, BACKOFF_MAX)


def pump(sel: selectors.BaseSelector, timeout: float) -> None:
    """Copy whatever the processes wrote, a whole line at a time, each with its prefix."""
    for key, _ in sel.select(timeout=timeout):
        prefix, buf = key.data
        chunk = key.fileobj.read()  # type: ignore[union-attr]
        if not chunk:
            sel.unregister(key.fileobj)
            if buf:
                sys.stdout.write(prefix + buf.decode(errors="replace") + "\n")
            key.fileobj.close()  # type: ignore[union-attr]
            continue
        buf.extend(chunk)
        *lines, rest = buf.split(b"\n")
        buf[:] = rest
        for line in lines:
            sys.stdout.write(prefix + line.decode(errors="replace") + "\n")
    sys.stdout.flush()


def main() -> int:
    RUN_DIR.mkdir(exist_ok=True)
    width = max(len(name) for name, _, _ in PROCESSES)
    sel = selectors.DefaultSelector()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    children = [
        Child(name, argv, extra, f"\033[{COLORS[i % len(COLORS)]}m{name.ljust(width)} |\033[0m ")
        for i, (name, argv, extra) in enumerate(PROCESSES)
    ]
    for child in children:
        child.start(sel)
    print(
        f"run: started {len(children)} processes; gateway on http://127.0.0.1:8000 "
        "(a process that dies is restarted; Ctrl-C stops all)",
        flush=True,
    )
    while not stopping:
        pump(sel, 0.5)
        now = time.monotonic()
        for child in children:
            if stopping:
                break
            if child.restart_at is None and child.proc is not None and child.proc.poll() is not None:
                child.exited(now)
            elif child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                pid = child.start(sel)
                print(f"run: {child.name} restarted (pid {pid}, restart {child.restarts})", flush=True)
    procs = [c.proc for c in children if c.proc is not None]
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    pump(sel, 0)
    print("run: all stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
