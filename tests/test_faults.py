"""Fault drills against real servers: a worker SIGKILLed mid-task, Redis down, RabbitMQ down."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from shared import testing
from shared.testing import Stack

P = "/smart_application/tasks"
pytestmark = pytest.mark.slow


async def ready_becomes(client: httpx.AsyncClient, status: int, timeout: float = 20.0) -> httpx.Response:
    """/ready once it answers `status`: it answers from a check up to READY_CACHE_SECONDS old."""
    deadline = time.monotonic() + timeout
    while True:
        ready = await client.get("/ready")
        if ready.status_code == status or time.monotonic() > deadline:
            return ready
        await asyncio.sleep(0.5)


async def status_of(client: httpx.AsyncClient, task_id: str, h: dict) -> dict:
    r = await client.get(f"{P}/task-status/{task_id}", headers=h)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def fault_stack(infra: Path) -> Iterator[Stack]:
    """An API on a vhost of its own, so only the workers this test starts take its tasks."""
    vhost = os.environ["TEST_SESSION_VHOST"] + "_faults"
    testing.ensure_vhost(vhost)
    env = {**os.environ, "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}"}
    stack = Stack(env, infra)
    try:
        stack.api("task_service", "task")
        yield stack
    finally:
        stack.stop()
        testing.delete_vhost(vhost)


async def test_worker_sigkill_mid_task_loses_nothing(fault_stack: Stack, auth) -> None:
    h = auth("faults")
    worker = fault_stack.worker("task_service.worker", "default", concurrency=2)
    async with httpx.AsyncClient(base_url=fault_stack.urls["task"], timeout=30) as client:
        long_ids = []
        for _ in range(2):
            r = await client.post(
                f"{P}/long-running-task/", json={"steps": 12, "step_seconds": 0.25}, headers=h
            )
            long_ids.append(r.json()["task_id"])
        short_ids = []
        for i in range(40):
            r = await client.post(
                f"{P}/background-task/", json={"task_type": "noop", "data": {"i": i}}, headers=h
            )
            assert r.status_code == 202
            short_ids.append(r.json()["task_id"])
        # wait until a long task is well under way, then kill the worker and all its children
        for _ in range(200):
            p = (await client.get(f"{P}/task-progress/{long_ids[0]}", headers=h)).json()
            if p["current"] >= 3:
                break
            await asyncio.sleep(0.05)
        before_kill = p["current"]
        assert before_kill >= 3
        worker.kill(signal.SIGKILL)
        worker.popen.wait(10)
        assert (await status_of(client, long_ids[0], h))["status"] in {"PROGRESS", "STARTED"}
        fault_stack.worker("task_service.worker", "default", concurrency=2)
        seen = [before_kill]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            p = (await client.get(f"{P}/task-progress/{long_ids[0]}", headers=h)).json()
            seen.append(p["current"])
            if p["status"] == "SUCCESS":
                break
            await asyncio.sleep(0.05)
        assert seen == sorted(seen), "progress went backwards"
        for tid in long_ids + short_ids:
            while (s := await status_of(client, tid, h))["status"] not in {"SUCCESS", "FAILURE"}:
                assert time.monotonic() < deadline, s
                await asyncio.sleep(0.1)
            assert s["status"] == "SUCCESS", s
        result = (await status_of(client, long_ids[0], h))["result"]
        assert result["completed_steps"] == 12
        assert result["resumed_from"] >= before_kill  # it resumed, it did not start over
    with redis.Redis.from_url(os.environ["REDIS_URL"]) as client:
        rec = client.hgetall(f"t:rec:{long_ids[0]}")
    assert int(rec[b"attempts"]) >= 2


async def test_pool_child_killed_task_redelivered(fault_stack: Stack, auth) -> None:
    h = auth("faults")
    worker = fault_stack.worker("task_service.worker", "default", concurrency=1)
    async with httpx.AsyncClient(base_url=fault_stack.urls["task"], timeout=30) as client:
        r = await client.post(f"{P}/long-running-task/", json={"steps": 8, "step_seconds": 0.25}, headers=h)
        tid = r.json()["task_id"]
        for _ in range(200):
            if (await client.get(f"{P}/task-progress/{tid}", headers=h)).json()["current"] >= 2:
                break
            await asyncio.sleep(0.05)
        children = psutil.Process(worker.pid).children(recursive=True)
        assert children
        for child in children:
            child.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 60
        while (s := await status_of(client, tid, h))["status"] not in {"SUCCESS", "FAILURE"}:
            assert time.monotonic() < deadline, s
            await asyncio.sleep(0.1)
        assert s["status"] == "SUCCESS", s
        assert s["result"]["resumed_from"] >= 2


@pytest.fixture
def private_redis(infra: Path) -> Iterator[tuple[int, callable]]:
    """A redis-server of the test's own, so stopping it disturbs nothing else."""
    port = testing.free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    procs: list[subprocess.Popen] = []

    def start() -> None:
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with redis.Redis(port=port) as client:
            for _ in range(100):
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    time.sleep(0.05)
        raise RuntimeError("private redis did not start")

    def stop() -> None:
        procs[-1].kill()
        procs[-1].wait()

    start()
    try:
        yield port, start, stop
    finally:
        for p in procs:
            p.kill()
            p.wait()


async def test_redis_down_is_503_and_recovers(private_redis, infra: Path, auth) -> None:
    port, start, stop = private_redis
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    stack = Stack(env, infra)
    h = auth("faults", "tasks cache")
    try:
        url = stack.api("task_service", "task")
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            assert (await client.put(f"{P}/cache/k", json={"value": 1}, headers=h)).status_code == 200
            stop()
            for method, path, body in (
                ("GET", f"{P}/cache/k", None),
                ("GET", f"{P}/task-status/x", None),
                ("POST", f"{P}/background-task/", {"task_type": "noop", "data": {}}),
            ):
                t0 = time.monotonic()
                r = await client.request(method, path, json=body, headers=h)
                assert r.status_code == 503, r.text
                assert time.monotonic() - t0 < 5
                assert int(r.headers["retry-after"]) > 0
                assert r.json()["error"]["code"] == "redis_unavailable"
                assert "Traceback" not in r.text
            ready = await ready_becomes(client, 503)
            assert ready.status_code == 503 and ready.json()["checks"]["redis"] != "ok"
            start()
            for _ in range(50):
                r = await client.put(f"{P}/cache/k", json={"value": 2}, headers=h)
                if r.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert r.status_code == 200
            assert (await client.get(f"{P}/cache/k", headers=h)).json()["value"] == 2
            assert (await ready_becomes(client, 200)).status_code == 200
    finally:
        stack.stop()


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


async def test_rabbitmq_down_is_503_fast_and_recovers(task_stack: Stack, auth) -> None:
    h = auth("faults")
    async with httpx.AsyncClient(base_url=task_stack.urls["task"], timeout=30) as client:
        assert (
            await client.post(f"{P}/background-task/", json={"task_type": "noop", "data": {}}, headers=h)
        ).status_code == 202
        before = (await client.get(f"{P}/tasks/", params={"limit": 500}, headers=h)).json()["count"]
        rabbitmqctl("stop_app")
        try:
            t0 = time.monotonic()
            r = await client.post(
                f"{P}/background-task/", json={"task_type": "noop", "data": {"x": 1}}, headers=h
            )
            elapsed = time.monotonic() - t0
            assert r.status_code == 503, r.text
            assert elapsed < 8, elapsed
            assert r.json()["error"]["code"] == "broker_unavailable"
            assert int(r.headers["retry-after"]) > 0
            # the refused submission left no record behind to sit PENDING forever
            after = (await client.get(f"{P}/tasks/", params={"limit": 500}, headers=h)).json()["count"]
            assert after == before
            ready = await ready_becomes(client, 503)
            assert ready.status_code == 503 and ready.json()["checks"]["rabbitmq"] != "ok"
        finally:
            rabbitmqctl("start_app")
            rabbitmqctl("await_startup")
        deadline = time.monotonic() + 30
        while True:
            r = await client.post(f"{P}/background-task/", json={"task_type": "noop", "data": {}}, headers=h)
            if r.status_code == 202:
                break
            assert time.monotonic() < deadline, r.text
            await asyncio.sleep(0.5)
        tid = r.json()["task_id"]
        while (await status_of(client, tid, h))["status"] != "SUCCESS":
            assert time.monotonic() < deadline + 30
            await asyncio.sleep(0.2)
