"""Fault drills against real servers: a worker SIGKILLed mid-task, Redis down, a private RabbitMQ
stopped and restarted, and a cancel that races a running step."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import psutil
import pytest
import redis
import redis.asyncio as aioredis

import testkit
from testkit import Stack

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
    testkit.ensure_vhost(vhost)
    env = {**os.environ, "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}"}
    stack = Stack(env, infra)
    try:
        stack.api("task_service", "task")
        yield stack
    finally:
        stack.stop()
        testkit.delete_vhost(vhost)


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


async def test_cancelled_task_writes_no_progress_or_event_after_it_is_final(fault_stack: Stack, auth) -> None:
    """Cancel a running long task: once the cancel is accepted its progress stands still, and
    its event stream ends with REVOKED, though its step was running at that moment."""
    h = auth("faults")
    fault_stack.worker("task_service.worker", "default", concurrency=1)
    step = 0.4
    events: list[dict] = []
    async with httpx.AsyncClient(base_url=fault_stack.urls["task"], timeout=30) as client:
        r = await client.post(f"{P}/long-running-task/", json={"steps": 30, "step_seconds": step}, headers=h)
        tid = r.json()["task_id"]
        async with aioredis.Redis.from_url(os.environ["REDIS_URL"]) as rc, rc.pubsub() as ps:
            await ps.subscribe(f"t:ev:{tid}")
            # Cancel just as step 3 begins: the step is sleeping, past any cancel check, when the
            # cancel is accepted; before the fix its progress write still went through.
            deadline = time.monotonic() + 60
            while not events or events[-1].get("current", 0) < 2:
                assert time.monotonic() < deadline, events
                if msg := await ps.get_message(ignore_subscribe_messages=True, timeout=1):
                    events.append(orjson.loads(msg["data"]))
            r = await client.post(f"{P}/task-cancel/{tid}", headers=h)
            assert r.status_code == 202, r.text
            at_cancel = (await client.get(f"{P}/task-progress/{tid}", headers=h)).json()["current"]
            deadline = time.monotonic() + 30
            while (s := await status_of(client, tid, h))["status"] != "REVOKED":
                assert s["status"] in {"STARTED", "PROGRESS"}, s
                assert time.monotonic() < deadline, s
                await asyncio.sleep(0.05)
            seen = set()
            watch_until = time.monotonic() + 4 * step  # a few step durations after REVOKED
            while time.monotonic() < watch_until:
                seen.add((await client.get(f"{P}/task-progress/{tid}", headers=h)).json()["current"])
                while msg := await ps.get_message(ignore_subscribe_messages=True, timeout=0.05):
                    events.append(orjson.loads(msg["data"]))
            while msg := await ps.get_message(ignore_subscribe_messages=True, timeout=0.5):
                events.append(orjson.loads(msg["data"]))
    assert seen == {at_cancel}, (at_cancel, seen)
    final = [i for i, e in enumerate(events) if e.get("status") in {"SUCCESS", "FAILURE", "REVOKED"}]
    assert len(final) == 1 and events[final[0]]["status"] == "REVOKED", events
    assert final[0] == len(events) - 1, f"written after REVOKED: {events[final[0] + 1 :]}"
    assert all(e["current"] <= at_cancel for e in events if e["event"] == "progress"), (at_cancel, events)
    with redis.Redis.from_url(os.environ["REDIS_URL"]) as rc:
        assert rc.hget(f"t:rec:{tid}", "status") == b"REVOKED"
        assert int(rc.hget(f"t:prog:{tid}", "current")) == at_cancel


@pytest.fixture
def private_redis(infra: Path) -> Iterator[tuple[int, callable]]:
    """A redis-server of the test's own, so stopping it disturbs nothing else."""
    port = testkit.free_port()
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


# Broker restarts in the drill below; FAULT_DRILL_RESTARTS=20 repeats it for a longer proof.
BROKER_RESTARTS = int(os.environ.get("FAULT_DRILL_RESTARTS", "2"))


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testkit.PrivateRabbit]:
    """A RabbitMQ node of this module's own: the drills stop it, never the machine's broker."""
    with testkit.private_rabbitmq(tmp_path_factory.mktemp("rabbit")) as rabbit:
        yield rabbit


@pytest.fixture
def broker_stack(private_broker: testkit.PrivateRabbit, infra: Path) -> Iterator[Stack]:
    """task-service's API on a fresh vhost of the private broker; the test starts the workers."""
    vhost = f"drill_{time.monotonic_ns()}"
    env = {**os.environ, "BROKER_URL": private_broker.add_vhost(vhost)}
    stack = Stack(env, infra)
    try:
        stack.api("task_service", "task")
        yield stack
    finally:
        stack.stop()
        private_broker.start_app()  # a failed drill must not leave the next one without a broker


async def test_rabbitmq_down_is_503_fast_and_recovers(
    broker_stack: Stack, private_broker: testkit.PrivateRabbit, auth
) -> None:
    h = auth("faults")
    broker_stack.worker("task_service.worker", "default", concurrency=1)
    async with httpx.AsyncClient(base_url=broker_stack.urls["task"], timeout=30) as client:
        assert (
            await client.post(f"{P}/background-task/", json={"task_type": "noop", "data": {}}, headers=h)
        ).status_code == 202
        before = (await client.get(f"{P}/tasks/", params={"limit": 500}, headers=h)).json()["count"]
        private_broker.stop_app()
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
            private_broker.start_app()
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


async def wait_progress(client: httpx.AsyncClient, tid: str, h: dict, at_least: int) -> int:
    deadline = time.monotonic() + 60
    while (current := (await client.get(f"{P}/task-progress/{tid}", headers=h)).json()["current"]) < at_least:
        assert time.monotonic() < deadline, f"{tid} stuck at {current}"
        await asyncio.sleep(0.05)
    return int(current)


async def test_worker_survives_broker_restarts_while_tasks_run(
    broker_stack: Stack, private_broker: testkit.PrivateRabbit, auth
) -> None:
    """Each restart cancels the running long task (its ack is lost with the connection), kills
    its pool process, reconnects and runs it again from its last step; the worker lives on."""
    h = auth("faults")
    worker = broker_stack.worker("task_service.worker", "default", concurrency=2)
    long_ids: list[str] = []
    async with httpx.AsyncClient(base_url=broker_stack.urls["task"], timeout=30) as client:
        for restart in range(BROKER_RESTARTS):
            r = await client.post(
                f"{P}/long-running-task/", json={"steps": 16, "step_seconds": 0.3}, headers=h
            )
            assert r.status_code == 202, r.text
            long_ids.append(tid := r.json()["task_id"])
            await wait_progress(client, tid, h, 1)  # running in a pool process now
            lost_before = worker.log_text().count("Connection to broker lost")
            private_broker.stop_app()
            try:
                deadline = time.monotonic() + 30
                while worker.log_text().count("Connection to broker lost") == lost_before:
                    assert worker.alive(), worker.log_text()[-4000:]
                    assert time.monotonic() < deadline, worker.log_text()[-4000:]
                    await asyncio.sleep(0.1)
            finally:
                private_broker.start_app()
            deadline = time.monotonic() + 90
            while (s := await status_of(client, tid, h))["status"] != "SUCCESS":
                assert worker.alive(), f"restart {restart + 1}: worker died\n{worker.log_text()[-4000:]}"
                assert s["status"] not in {"FAILURE", "REVOKED"}, s
                assert time.monotonic() < deadline, (s, worker.log_text()[-4000:])
                await asyncio.sleep(0.2)
            assert s["result"]["completed_steps"] == 16, s
            assert s["result"]["resumed_from"] >= 1, (s, worker.log_text()[-3000:])  # from its last step
    log = worker.log_text()
    assert worker.alive()
    assert "Unrecoverable error" not in log, log[-4000:]
    assert log.count("Connection to broker lost") == BROKER_RESTARTS
    with redis.Redis.from_url(os.environ["REDIS_URL"]) as r:
        attempts = [int(r.hget(f"t:rec:{tid}", "attempts") or 0) for tid in long_ids]
    assert all(a >= 2 for a in attempts), attempts  # each one was cut off and run again
