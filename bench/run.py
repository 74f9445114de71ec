"""`make bench`: every benchmark, each against its baseline run side by side in the same run.

Sections run one after another (the machine has two cores; running them at once would
measure contention). A section whose script is missing is reported, not skipped silently.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = [
    ("tasks", ROOT / "bench" / "bench_tasks.py"),
    ("gateway", ROOT / "gateway" / "bench" / "bench_gateway.py"),
    ("scraping", ROOT / "scraping-service" / "bench" / "bench_scrape.py"),
    ("extraction", ROOT / "scraping-service" / "bench" / "bench_extract.py"),
    ("notifications", ROOT / "notification-service" / "bench" / "bench_notify.py"),
]


def main() -> int:
    only = set(sys.argv[1:])
    failed = []
    for name, script in SECTIONS:
        if only and name not in only:
            continue
        print(f"== {name} ==", flush=True)
        if not script.exists():
            print(f"   no benchmark at {script.relative_to(ROOT)}")
            failed.append(name)
            continue
        t0 = time.monotonic()
        rc = subprocess.call([sys.executable, str(script)], cwd=ROOT, env=os.environ.copy())
        print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"bench: sections failed or missing: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
