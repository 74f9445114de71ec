"""What the task-service benches set up alike: a run's own environment, and its API and
workers started side by side."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import testkit

ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = ROOT / ".run" / "bench-logs"


def run_env(vhost: str, redis_db: int) -> tuple[dict[str, str], Path]:
    """The run's environment (its own vhost and Redis database; runs, test sessions and a running
    platform never share state), also set in this process's os.environ for the settings and the
    bare Celery app that read it; and the folder the started processes log to."""
    env = testkit.test_env(
        {
            "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
            "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
        }
    )
    os.environ.update(env)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return env, LOG_DIR


def start_side_by_side(procs: list[testkit.Proc], *starts: Callable[[], testkit.Proc]) -> list[testkit.Proc]:
    """Run each start at once (each waits for its own process to be ready) and return the
    processes in order. The ones that started go into `procs`, for the caller to stop; the
    first failure is raised."""
    with ThreadPoolExecutor(len(starts)) as pool:
        futures = [pool.submit(start) for start in starts]
    procs.extend(f.result() for f in futures if f.exception() is None)
    for f in futures:
        if (error := f.exception()) is not None:
            raise error
    return [f.result() for f in futures]


def start_api_and_bare_worker(
    procs: list[testkit.Proc], api_port: int, env: dict[str, str], *, concurrency: int
) -> list[testkit.Proc]:
    """task-service's API and the baseline's bare Celery worker (bench/bare_app.py), side by side."""
    return start_side_by_side(
        procs,
        partial(testkit.start_api, "task_service", api_port, env, LOG_DIR),
        partial(
            testkit.start_worker,
            "bare_app",
            "bare",
            {**env, "PYTHONPATH": str(ROOT / "bench")},
            LOG_DIR,
            concurrency=concurrency,
        ),
    )
