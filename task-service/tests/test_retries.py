"""sleep and fail task types, retry policies and time limits, against a real worker."""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson

P = "/smart_application/tasks"


async def submit(client: httpx.AsyncClient, headers: dict, **body) -> str:
    r = await client.post(f"{P}/background-task/", json=body, headers=headers)
    assert r.status_code == 202, r.text
    return str(r.json()["task_id"])


async def test_sleep_returns_and_fail_fails_with_its_message(task_client, auth, wait) -> None:
    h = auth("retry-kinds")
    slept = await submit(task_client, h, task_type="sleep", data={"seconds": 0.2})
    failed = await submit(task_client, h, task_type="fail", data={"message": "boom"})
    done = await wait(task_client, slept, h, {"SUCCESS", "FAILURE"})
    assert done["status"] == "SUCCESS" and done["result"] == {"slept_seconds": 0.2}
    bad = await wait(task_client, failed, h, {"SUCCESS", "FAILURE"})
    assert bad["status"] == "FAILURE"
    assert bad["error"] == {"type": "FailedOnPurpose", "message": "boom"}
    r = await task_client.post(
        f"{P}/background-task/", json={"task_type": "sleep", "data": {"seconds": 3601}}, headers=h
    )
    assert r.status_code == 422


async def test_fail_twice_then_succeed_with_three_attempts(task_client, auth, wait) -> None:
    h = auth("retry-policy")
    policy = {"max_attempts": 3, "backoff": "fixed", "initial_seconds": 0.5, "jitter": False}
    ok = await submit(task_client, h, task_type="fail", data={"succeed_after": 2}, retry=policy)
    short = await submit(
        task_client, h, task_type="fail", data={"succeed_after": 2}, retry={**policy, "max_attempts": 2}
    )
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # RETRY is visible, with when the next attempt is due
        r = await task_client.get(f"{P}/task-status/{ok}", headers=h)
        body = r.json()
        if body["status"] == "RETRY":
            seen.add("RETRY")
            assert body["next_retry_at"] and body["error"]["type"] == "FailedOnPurpose"
        if body["status"] in {"SUCCESS", "FAILURE"}:
            break
        await asyncio.sleep(0.05)
    assert "RETRY" in seen
    assert body["status"] == "SUCCESS" and body["attempts"] == 3, body
    assert body["result"] == {"attempt": 3, "succeeded_after": 2} and body["next_retry_at"] is None
    failed = await wait(task_client, short, h, {"SUCCESS", "FAILURE"})
    assert failed["status"] == "FAILURE" and failed["attempts"] == 2, failed


async def test_non_retryable_errors_are_not_retried(task_client, auth, wait) -> None:
    h = auth("retry-policy")
    tid = await submit(
        task_client,
        h,
        task_type="data_processing",
        data={"operations": ["explode"]},
        retry={"max_attempts": 5},
    )
    done = await wait(task_client, tid, h, {"SUCCESS", "FAILURE"})
    assert done["status"] == "FAILURE" and done["attempts"] == 1
    r = await task_client.post(
        f"{P}/background-task/", json={"task_type": "noop", "retry": {"max_attempts": 21}}, headers=h
    )
    assert r.status_code == 422


async def test_run_timeout_stops_a_running_task_with_time_limit_exceeded(task_client, auth, wait) -> None:
    h = auth("limits")
    tid = await submit(task_client, h, task_type="sleep", data={"seconds": 10}, run_timeout_seconds=1)
    done = await wait(task_client, tid, h, {"SUCCESS", "FAILURE"}, timeout=8)
    assert done["status"] == "FAILURE" and done["error"]["type"] == "TimeLimitExceeded", done
    assert done["attempts"] == 1


async def test_queue_timeout_expires_a_task_waiting_in_redis_without_running_it(
    task_client, auth, wait
) -> None:
    h = auth("limits")
    # Held back by a countdown past its deadline: the workers' pass expires it where it waits.
    tid = await submit(task_client, h, task_type="noop", countdown=3, queue_timeout_seconds=1)
    done = await wait(task_client, tid, h, {"SUCCESS", "FAILURE", "EXPIRED"}, timeout=10)
    assert done["status"] == "EXPIRED", done
    assert done["attempts"] == 0 and done["started_at"] is None
    assert done["error"]["type"] == "QueueTimeout"
    await asyncio.sleep(3)  # past the countdown: it never runs after all
    again = (await task_client.get(f"{P}/task-status/{tid}", headers=h)).json()
    assert again["status"] == "EXPIRED" and again["started_at"] is None
    listed = (await task_client.get(f"{P}/tasks/", params={"status": "EXPIRED"}, headers=h)).json()
    assert [t["task_id"] for t in listed["tasks"]] == [tid]


async def test_queue_timeout_expires_a_task_stuck_behind_a_busy_worker(task_client, auth, wait) -> None:
    h = auth("busy")
    blockers = [await submit(task_client, h, task_type="sleep", data={"seconds": 3}) for _ in range(2)]
    late = await submit(task_client, h, task_type="noop", queue_timeout_seconds=0.5)
    done = await wait(task_client, late, h, {"SUCCESS", "FAILURE", "EXPIRED"}, timeout=15)
    assert done["status"] == "EXPIRED" and done["attempts"] == 0, done
    for b in blockers:
        assert (await wait(task_client, b, h, {"SUCCESS", "FAILURE"}, timeout=15))["status"] == "SUCCESS"
    r = await task_client.post(
        f"{P}/background-task/", json={"task_type": "noop", "run_timeout_seconds": 100000}, headers=h
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "timeout_too_long"


async def test_replay_of_a_failed_task_runs_it_again_linked_by_retry_of(task_client, auth, wait) -> None:
    h = auth("replayer")
    tid = await submit(task_client, h, task_type="fail", data={"message": "again"}, priority=7)
    await wait(task_client, tid, h, {"FAILURE"})
    r = await task_client.post(f"{P}/task-retry/{tid}", headers=h)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["retry_of"] == tid and body["task_id"] != tid
    again = await wait(task_client, body["task_id"], h, {"SUCCESS", "FAILURE"})
    assert again["status"] == "FAILURE" and again["retry_of"] == tid
    assert again["error"] == {"type": "FailedOnPurpose", "message": "again"}
    ok = await submit(task_client, h, task_type="noop", data={"x": 1})
    await wait(task_client, ok, h, {"SUCCESS"})
    r = await task_client.post(f"{P}/task-retry/{ok}", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "task_succeeded"
    slow = await submit(task_client, h, task_type="sleep", data={"seconds": 1})
    r = await task_client.post(f"{P}/task-retry/{slow}", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "task_not_finished"
    r = await task_client.post(f"{P}/task-retry/{tid}", headers=auth("someone-else"))
    assert r.status_code == 404


async def test_bulk_replay_starts_the_callers_failed_tasks_of_a_type(task_client, auth, wait) -> None:
    h = auth("bulk-replayer")
    failed = [await submit(task_client, h, task_type="fail", data={"message": f"m{i}"}) for i in range(3)]
    other = await submit(task_client, h, task_type="text_analysis", data={"text": "x", "top": 1})
    for tid in failed:
        await wait(task_client, tid, h, {"FAILURE"})
    await wait(task_client, other, h, {"SUCCESS"})
    r = await task_client.post(f"{P}/tasks/retry", json={"status": "FAILURE", "task_type": "fail"}, headers=h)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["count"] == 3 and len(set(body["task_ids"])) == 3
    links = set()
    for new in body["task_ids"]:
        done = await wait(task_client, new, h, {"FAILURE", "SUCCESS"})
        links.add(done["retry_of"])
    assert links == set(failed)
    r = await task_client.post(f"{P}/tasks/retry", json={"status": "SUCCESS"}, headers=h)
    assert r.status_code == 422


async def test_task_list_filters_by_type_and_time_and_pages_with_a_cursor(task_client, auth, wait) -> None:
    h = auth("cursor-lister")
    ids = [await submit(task_client, h, task_type="noop", data={"i": i}) for i in range(5)]
    text = await submit(task_client, h, task_type="text_analysis", data={"text": "hi"})
    for tid in [*ids, text]:
        await wait(task_client, tid, h, {"SUCCESS"})
    pages: list[str] = []
    cursor = None
    while True:
        params = {"task_type": "noop", "limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await task_client.get(f"{P}/tasks/", params=params, headers=h)).json()
        pages += [t["task_id"] for t in body["tasks"]]
        assert all(t["attempts"] == 1 and t["retry_of"] is None for t in body["tasks"])
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert pages == ids[::-1]  # newest first, each once
    later = (await task_client.get(f"{P}/tasks/", params={"since": "2999-01-01T00:00:00Z"}, headers=h)).json()
    assert later["tasks"] == []
    early = (await task_client.get(f"{P}/tasks/", params={"until": "2000-01-01T00:00:00Z"}, headers=h)).json()
    assert early["tasks"] == []
    r = await task_client.get(f"{P}/tasks/", params={"cursor": "not-a-cursor"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_cursor"


async def test_task_events_show_each_retry_then_the_final_status(task_client, auth) -> None:
    h = auth("retry-events")
    policy = {"max_attempts": 2, "backoff": "fixed", "initial_seconds": 1, "jitter": False}
    # The countdown lets the stream subscribe before the first attempt fails.
    tid = await submit(task_client, h, task_type="fail", data={"succeed_after": 1}, retry=policy, countdown=1)
    events: list[tuple[str, dict]] = []
    async with task_client.stream("GET", f"{P}/task-events/{tid}", headers=h, timeout=30) as r:
        assert r.status_code == 200
        kind = ""
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, orjson.loads(line[6:])))
    statuses = [e["status"] for k, e in events if k == "status"]
    retry = next(e for k, e in events if k == "status" and e["status"] == "RETRY")
    assert retry["next_retry_at"]
    assert statuses[-1] == "SUCCESS" and events[-1][1]["attempts"] == 2
