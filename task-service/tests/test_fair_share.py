"""Fair share of the queue: one user's backlog or countdowns never hold back another user's tasks.

A stack of its own (its own vhost, so its fair queue is its own too): task-service's API, a
second API with a small MAX_QUEUED_TASKS_PER_USER, and one worker with two slots.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

import testkit
from testkit import Stack

P = "/smart_application/tasks"
SMALL_LIMIT = 3


@pytest.fixture(scope="module")
def fair_stack(infra) -> Iterator[Stack]:
    vhost = os.environ["TEST_SESSION_VHOST"] + "_fair"
    testkit.ensure_vhost(vhost)
    stack = Stack({**os.environ, "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}"}, infra)
    try:
        stack.api("task_service", "task")
        stack.api("task_service", "capped", {"MAX_QUEUED_TASKS_PER_USER": str(SMALL_LIMIT)})
        stack.worker("task_service.worker", "default", concurrency=2)
        yield stack
    finally:
        stack.stop()
        testkit.delete_vhost(vhost)


async def submit_many(
    client: httpx.AsyncClient, headers: dict[str, str], bodies: list[dict[str, Any]]
) -> list[str]:
    sem = asyncio.Semaphore(16)

    async def one(body: dict[str, Any]) -> str:
        async with sem:
            r = await client.post(f"{P}/{body.pop('path')}/", json=body, headers=headers)
        assert r.status_code == 202, r.text
        return str(r.json()["task_id"])

    return list(await asyncio.gather(*(one(dict(b)) for b in bodies)))


async def test_one_users_backlog_does_not_delay_another_users_new_tasks(
    fair_stack: Stack, auth, wait
) -> None:
    a, b = auth("fair-a"), auth("fair-b")
    step = {"path": "long-running-task", "steps": 1, "step_seconds": 0.1}
    async with httpx.AsyncClient(base_url=fair_stack.urls["task"], timeout=30) as client:
        a_ids = await submit_many(client, a, [step] * 150)
        b_ids = await submit_many(client, b, [step] * 4)
        b_done = [await wait(client, tid, b, {"SUCCESS"}, timeout=60) for tid in b_ids]
        a_tasks = (await client.get(f"{P}/tasks/", params={"limit": 500}, headers=a)).json()["tasks"]
    assert {t["task_id"] for t in a_tasks} == set(a_ids)
    b_submitted = min(t["created_at"] for t in b_done)
    # A's tasks that started after B submitted (some ran while A was still submitting)
    a_starts = sorted(t["started_at"] for t in a_tasks if t["started_at"] and t["started_at"] > b_submitted)
    for i, task in enumerate(sorted(b_done, key=lambda t: t["started_at"])):
        ahead = sum(1 for s in a_starts if s < task["started_at"])
        # In turn: B's i-th task waits for the window already in the broker (2 per worker slot,
        # 4 here, two of them running) and one A task per B task before it; never the backlog.
        assert ahead <= 4 + 2 * (i + 1), (i, ahead)
    last_b = max(t["finished_at"] for t in b_done)
    not_started = [t for t in a_tasks if not t["started_at"] or t["started_at"] > last_b]
    assert len(not_started) > 60, len(not_started)  # B did not wait for the backlog to drain
    assert len(a_ids) == 150


async def test_countdowns_of_one_user_do_not_hold_the_queue(fair_stack: Stack, auth, wait) -> None:
    a, b = auth("delay-a"), auth("delay-b")
    later = {"path": "background-task", "task_type": "noop", "data": {}, "countdown": 600}
    async with httpx.AsyncClient(base_url=fair_stack.urls["task"], timeout=30) as client:
        await submit_many(client, a, [later] * 320)
        t0 = time.monotonic()
        r = await client.post(
            f"{P}/background-task/", json={"task_type": "data_processing", "data": {"x": 1}}, headers=b
        )
        assert r.status_code == 202, r.text
        done = await wait(client, r.json()["task_id"], b, {"SUCCESS"}, timeout=30)
        took = time.monotonic() - t0
        pending = (
            await client.get(f"{P}/tasks/", params={"limit": 500, "status": "PENDING"}, headers=a)
        ).json()
    assert done["result"] is not None
    assert took < 10, took  # it was 34.5 s with the countdowns held by the worker
    assert pending["count"] == 320  # all still waiting for their due time, none run early


async def test_unfinished_tasks_over_the_limit_are_429_too_many_tasks(fair_stack: Stack, auth) -> None:
    capped, other = auth("capped-user"), auth("capped-other")
    later = {"task_type": "noop", "data": {}, "countdown": 600}
    async with httpx.AsyncClient(base_url=fair_stack.urls["capped"], timeout=30) as client:
        for _ in range(SMALL_LIMIT):
            r = await client.post(f"{P}/background-task/", json=later, headers=capped)
            assert r.status_code == 202, r.text
        r = await client.post(f"{P}/background-task/", json=later, headers=capped)
        assert r.status_code == 429, r.text
        err = r.json()["error"]
        assert err["code"] == "too_many_tasks"
        assert err["request_id"]
        assert int(r.headers["retry-after"]) > 0
        # the refused task left no record behind
        listed = (await client.get(f"{P}/tasks/", params={"limit": 50}, headers=capped)).json()
        assert listed["count"] == SMALL_LIMIT
        # the limit is per user: another user is not refused
        r = await client.post(f"{P}/background-task/", json=later, headers=other)
        assert r.status_code == 202, r.text


async def test_delayed_task_survives_worker_restart_and_runs_once(fair_stack: Stack, auth, wait) -> None:
    h = auth("delay-restart")
    async with httpx.AsyncClient(base_url=fair_stack.urls["task"], timeout=30) as client:
        r = await client.post(
            f"{P}/background-task/", json={"task_type": "noop", "data": {"n": 1}, "countdown": 2}, headers=h
        )
        assert r.status_code == 202, r.text
        tid = r.json()["task_id"]
        worker = next(p for p in fair_stack.procs if p.name.startswith("worker") and p.alive())
        worker.kill()  # SIGKILL, pool children too: nothing holds the delayed task
        await asyncio.sleep(3)  # due while no worker runs
        assert (await client.get(f"{P}/task-status/{tid}", headers=h)).json()["status"] == "PENDING"
        fair_stack.worker("task_service.worker", "default", concurrency=2)
        done = await wait(client, tid, h, {"SUCCESS"}, timeout=30)
    assert done["result"] is not None
    with redis.Redis.from_url(os.environ["REDIS_URL"]) as r_:
        assert r_.hget(f"t:rec:{tid}", "attempts") == b"1"
