"""`make bench`: every benchmark, each against its baseline run side by side in the same run.

    python bench/run.py [--quick] [SECTION ...]

Sections run one after another (the machine has two cores; running them at once would
measure contention). The exit status is non-zero when any section fails, is missing, or is
not a section at all. `--quick` runs each with a tiny workload: it proves the section still
works and prints its figures (the test suite runs it so benchmarks cannot rot), but its
figures mean nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Section:
    script: Path
    quick: tuple[str, ...]  # arguments of the quick run
    figures: tuple[str, ...]  # what its output always prints (checked by the quick test)


SECTIONS = {
    "tasks": Section(
        ROOT / "bench" / "bench_tasks.py",
        ("--tasks", "20", "--rounds", "1"),
        ("bare Celery apply_async + worker", "task-service over HTTP + worker", "ratio", "CPU per task"),
    ),
    "noisy-neighbour": Section(
        ROOT / "bench" / "bench_fairness.py",
        ("--flood", "60"),
        ("behind A's flood (fair queues)", "bare Celery, empty queue", "ratio"),
    ),
    "polling": Section(
        ROOT / "bench" / "bench_polling.py",
        ("--tasks", "16", "--users", "4", "--limit", "default", "--rounds", "1"),
        ("bare Celery apply_async + AsyncResult polling", "through the gateway", "of them 429", "ratio"),
    ),
    "gateway": Section(
        ROOT / "gateway" / "bench" / "bench_gateway.py",
        ("--duration", "1", "--rounds", "1", "--warmup", "0"),
        ("gateway / bare proxy", "req/s", "CPU per request"),
    ),
    "scraping": Section(
        ROOT / "scraping-service" / "bench" / "bench_scrape.py",
        ("--tasks", "6"),
        ("scrape tasks/s", "bare asyncio fetch pages/s", "ratio scrape/bare"),
    ),
    "extraction": Section(
        ROOT / "scraping-service" / "bench" / "bench_extract.py",
        ("--quick",),
        ("pages of mozilla/readability test-pages", "token F1", "production F1"),
    ),
    "notifications": Section(
        ROOT / "notification-service" / "bench" / "bench_notify.py",
        ("--count", "100"),
        ("platform", "bare aiohttp loop (ceiling)", "ratio", "CPU per delivery"),
    ),
}
QUICK_TIMEOUT_SECONDS = 240


def run(name: str, command: list[str], timeout: float | None) -> int:
    proc = subprocess.Popen(command, cwd=ROOT, env=os.environ.copy())
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"   {name} did not finish in {timeout:.0f} s; interrupting it", flush=True)
        # SIGINT, not SIGKILL: the script's cleanup stops the processes it started.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny workloads: does each still run?")
    parser.add_argument("sections", nargs="*", metavar="SECTION", help=f"any of: {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    unknown = [name for name in args.sections if name not in SECTIONS]
    if unknown:
        print(f"bench: no section {', '.join(unknown)}; the sections are {', '.join(SECTIONS)}")
        return 2
    failed = []
    for name, section in SECTIONS.items():
        if args.sections and name not in args.sections:
            continue
        print(f"== {name} ==", flush=True)
        if not section.script.exists():
            print(f"   no benchmark at {section.script.relative_to(ROOT)}")
            failed.append(name)
            continue
        command = [sys.executable, str(section.script), *(section.quick if args.quick else ())]
        t0 = time.monotonic()
        rc = run(name, command, QUICK_TIMEOUT_SECONDS if args.quick else None)
        print(f"   ({time.monotonic() - t0:.0f} s{', failed with ' + str(rc) if rc else ''})", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"bench: sections failed or missing: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
