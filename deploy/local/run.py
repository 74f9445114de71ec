"""`make run`: every API, one worker per queue, beat and the scheduler, in the foreground.

Each line of output is prefixed with its process name. Ctrl-C or SIGTERM stops them all
(each runs in its own process group, so pool children go too): no orphans.
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
    # Schedules made through the API; any number may run (each tick is claimed once).
    ("scheduler", [PY, "-m", "task_service.scheduler"], {"SCHEDULER_METRICS_PORT": "9104"}),
]
COLORS = [31, 32, 33, 34, 35, 36, 91, 92, 93, 94]


def main() -> int:
    RUN_DIR.mkdir(exist_ok=True)
    width = max(len(name) for name, _, _ in PROCESSES)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    sel = selectors.DefaultSelector()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for i, (name, argv, extra) in enumerate(PROCESSES):
        env = {**os.environ, **extra, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        prefix = f"\033[{COLORS[i % len(COLORS)]}m{name.ljust(width)} |\033[0m "
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        sel.register(proc.stdout, selectors.EVENT_READ, (prefix, bytearray()))
        procs.append((name, proc))
    print(
        f"run: started {len(procs)} processes; gateway on http://127.0.0.1:8000 (Ctrl-C stops all)",
        flush=True,
    )
    exit_code = 0
    while not stopping:
        for key, _ in sel.select(timeout=0.5):
            prefix, buf = key.data
            chunk = key.fileobj.read()  # type: ignore[union-attr]
            if not chunk:
                sel.unregister(key.fileobj)
                continue
            buf.extend(chunk)
            *lines, rest = buf.split(b"\n")
            buf[:] = rest
            for line in lines:
                sys.stdout.write(prefix + line.decode(errors="replace") + "\n")
            sys.stdout.flush()
        for name, proc in procs:
            if proc.poll() is not None:
                print(f"run: {name} exited with {proc.returncode}; stopping everything", flush=True)
                exit_code = proc.returncode or 1
                stopping = True
                break
    for _, proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for _, proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    print("run: all stopped", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
