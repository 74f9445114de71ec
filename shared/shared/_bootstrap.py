"""Runs before prometheus_client is imported anywhere in the process.

prometheus_client picks its value store at import time, so a prefork Celery worker must have
PROMETHEUS_MULTIPROC_DIR set before that import for its children's metrics to reach the
parent's /metrics endpoint. Operators may set it themselves; otherwise a fresh directory is made.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path


def _is_celery_worker(argv: list[str]) -> bool:
    prog = Path(argv[0]).name if argv else ""
    return ("celery" in prog or "celery" in (argv[0] if argv else "")) and "worker" in argv


def prepare_metrics_dir(argv: list[str] | None = None) -> str | None:
    argv = sys.argv if argv is None else argv
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        return os.environ["PROMETHEUS_MULTIPROC_DIR"]
    if _is_celery_worker(argv):
        path = tempfile.mkdtemp(prefix="smartapp-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        # Removed when the worker's main process exits (pool children leave with os._exit).
        atexit.register(shutil.rmtree, path, True)
        return path
    return None


prepare_metrics_dir()
