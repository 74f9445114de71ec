"""`make run` keeps the platform up: a process that dies is logged and started again, with
backoff, and nothing else stops (deploy/local/run.py)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import selectors
import signal
import sys
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]


async def test_a_killed_worker_is_restarted_and_nothing_else_stops(local_stack) -> None:
    """SIGKILL the task worker's main process (as the OOM killer would): `make run` logs it,
    starts it again, its /metrics answers again, and no other process was stopped."""
    supervisor = psutil.Process(local_stack.pid)

    def task_worker() -> psutil.Process | None:
        for child in supervisor.children():
            if "task_service.worker" in child.cmdline():
                return child
        return None

    victim = task_worker()
    assert victim is not None
    others = {p.pid: p.create_time() for p in supervisor.children() if p.pid != victim.pid}
    assert len(others) == 8  # 3 APIs, the gateway, 2 other workers, beat, the scheduler
    victim.send_signal(signal.SIGKILL)
    local_stack.wait_for_log(f"run: task-worker (pid {victim.pid}) exited with -9; restarting in 1s", 30)
    local_stack.wait_for_log("run: task-worker restarted", 30)
    deadline = time.monotonic() + 90
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            new = task_worker()
            try:
                text = (await client.get("http://127.0.0.1:9101/metrics")).text
                if new is not None and new.pid != victim.pid and 'queue="default"' in text:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, local_stack.log_text()[-4000:]
            await asyncio.sleep(0.2)
    assert local_stack.alive()
    assert {p.pid: p.create_time() for p in supervisor.children() if p.pid != new.pid} == others
    assert "stopping everything" not in local_stack.log_text()
    # its pool processes went with it: nothing is left in its process group
    left = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(p.pid) == victim.pid and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p.pid)
    assert left == []


def load_run_py():
    spec = importlib.util.spec_from_file_location("make_run", ROOT / "deploy" / "local" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_restart_backoff_doubles_to_30s_and_resets_after_a_stable_run(capsys) -> None:
    run = load_run_py()
    child = run.Child("crasher", [sys.executable, "-c", "raise SystemExit(3)"], {}, "")
    sel = selectors.DefaultSelector()
    delays = []
    for _ in range(7):
        child.start(sel)
        child.proc.wait(10)
        now = time.monotonic()
        child.exited(now)
        delays.append(round(child.restart_at - now, 3))
        run.pump(sel, 0.2)
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    child.start(sel)
    child.proc.wait(10)
    child.started_at -= run.STABLE_SECONDS  # it had stayed up a minute before it died
    now = time.monotonic()
    child.exited(now)
    assert round(child.restart_at - now, 3) == 1
    run.pump(sel, 0.2)
    sel.close()
    assert f"run: crasher (pid {child.proc.pid}) exited with 3; restarting in 1s" in capsys.readouterr().out
