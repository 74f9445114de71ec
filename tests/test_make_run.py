"""The platform as `make run` starts it: the seed's curl examples through the gateway on :8000."""

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

GW = "http://127.0.0.1:8000"
ROOT = Path(__file__).resolve().parents[1]
P = "/smart_application/tasks"


async def test_seed_examples_through_the_gateway(local_stack, auth) -> None:
    h = auth("user123", "tasks cache")
    async with httpx.AsyncClient(base_url=GW, timeout=30) as client:
        r = await client.post(
            f"{P}/background-task/",
            json={"task_type": "data_processing", "data": {"input": "sample_data"}},
            headers=h,
        )
        assert r.status_code == 202, r.text
        task_id = r.json()["task_id"]
        for _ in range(200):
            status = (await client.get(f"{P}/task-status/{task_id}", headers=h)).json()
            if status["status"] == "SUCCESS":
                break
            await asyncio.sleep(0.05)
        assert status["status"] == "SUCCESS", status
        assert status["result"]["processed"] == {"input": "sample_data"}
        assert (await client.put(f"{P}/cache/k", json={"value": [1]}, headers=h)).status_code == 200
        assert (await client.get(f"{P}/cache/k", headers=h)).json()["value"] == [1]
        ready = await client.get("/ready")
        assert ready.status_code == 200, ready.text


async def test_every_process_serves_metrics(local_stack) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for port in (8000, 8001, 8002, 8003):
            assert (
                "smartapp_http_requests_total" in (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            )
        for port, queue in ((9101, "default"), (9102, "scraping"), (9103, "notifications")):
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert f'smartapp_queue_depth{{queue="{queue}"}}' in text, text[:2000]


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
    assert len(others) == 7  # 3 APIs, the gateway, 2 other workers, beat
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
