"""Priorities are real: with a backlog, a priority-9 task starts before priority-0 ones."""

from __future__ import annotations

import os

import httpx

import testkit
from testkit import Stack

P = "/smart_application/tasks"


async def test_high_priority_overtakes_backlog(infra, auth, wait) -> None:
    vhost = os.environ["TEST_SESSION_VHOST"] + "_priority"
    testkit.ensure_vhost(vhost)
    stack = Stack({**os.environ, "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}"}, infra)
    h = auth("prio")
    try:
        url = stack.api("task_service", "task")
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            low = []
            for i in range(6):
                r = await client.post(
                    f"{P}/background-task/",
                    json={"task_type": "noop", "data": {"i": i}, "priority": 0},
                    headers=h,
                )
                low.append(r.json()["task_id"])
            r = await client.post(
                f"{P}/background-task/", json={"task_type": "noop", "data": {}, "priority": 9}, headers=h
            )
            high = r.json()["task_id"]
            stack.worker("task_service.worker", "default", concurrency=1)
            done = {tid: await wait(client, tid, h, {"SUCCESS"}) for tid in [*low, high]}
        order = sorted(done, key=lambda tid: done[tid]["started_at"])
        assert order.index(high) <= 1, [done[t]["started_at"] for t in order]
    finally:
        stack.stop()
        testkit.delete_vhost(vhost)
