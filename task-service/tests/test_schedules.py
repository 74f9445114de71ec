"""Schedules against the real API, Redis, RabbitMQ, worker and scheduler processes."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis
import redis.asyncio as aioredis

import testkit
from shared import TaskRecords
from task_service.scheduler import LEASE_MS
from task_service.schedules import INFLIGHT_KEY, INFLIGHT_RUNS_KEY, Run, Schedules, to_ms
from testkit import Proc, Stack, sample_value

P = "/smart_application/tasks"
TASK = {"path": "background-task", "body": {"task_type": "data_processing", "data": {"input": "tick"}}}


def every5(name: str, **extra: object) -> dict[str, object]:
    return {"name": name, "target": TASK, "every_seconds": 5, **extra}


@pytest.fixture
def schedulers(task_stack: Stack) -> Iterator[list[Proc]]:
    """Scheduler processes a test starts (start_scheduler); all stopped at the end."""
    procs: list[Proc] = []
    yield procs
    for proc in procs:
        proc.stop()


@pytest.fixture
def orphans() -> Iterator[list[str]]:
    """Task ids of the runs a test leaves in flight, taken out at its end: a test that fails
    leaves nothing for the next test's schedulers to take over (and count)."""
    ids: list[str] = []
    yield ids
    if ids:
        with redis.Redis.from_url(os.environ["REDIS_URL"]) as r:
            r.zrem(INFLIGHT_KEY, *ids)
            r.hdel(INFLIGHT_RUNS_KEY, *ids)


def start_scheduler(stack: Stack, procs: list[Proc]) -> tuple[Proc, str]:
    port = testkit.free_port()
    proc = Proc(
        "scheduler",
        [sys.executable, "-m", "task_service.scheduler"],
        {**stack.env, "SCHEDULER_METRICS_PORT": str(port)},
        stack.log_dir / f"scheduler-{time.monotonic_ns()}.log",
    ).start()
    procs.append(proc)
    proc.wait_for_log("scheduler started", timeout=30)
    return proc, f"http://127.0.0.1:{port}/metrics"


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def create(client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, object]) -> dict:
    r = await client.post(f"{P}/schedules/", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def get(client: httpx.AsyncClient, headers: dict[str, str], schedule_id: str) -> dict:
    r = await client.get(f"{P}/schedules/{schedule_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def tasks_of(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict]:
    r = await client.get(f"{P}/tasks/", params={"limit": 500}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["tasks"]


async def tasks_settle(
    client: httpx.AsyncClient, headers: dict[str, str], want: int, timeout: float = 10
) -> list[dict]:
    """The owner's tasks once there are `want` (or the timeout passed): a tick is counted in the
    schedule when claimed, and its task is recorded just after."""
    deadline = time.time() + timeout
    while len(tasks := await tasks_of(client, headers)) < want and time.time() < deadline:
        await asyncio.sleep(0.1)
    return tasks


async def metric_settles(url: str, name: str, labels: dict[str, str], want: float) -> str:
    """The metrics text once `name` reaches `want` (a run is counted just after its publish)."""
    deadline = time.time() + 5
    while sample_value(text := httpx.get(url).text, name, labels) < want and time.time() < deadline:
        await asyncio.sleep(0.1)
    return text


async def sleep_until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.time()))


def uniq(name: str) -> str:
    return f"{name}-{os.getpid()}-{time.monotonic_ns()}"


async def test_schedule_lifecycle_cron_in_time_zone_pause_resume_edit_list_delete(task_client, auth) -> None:
    h = auth(uniq("crud"), "tasks")
    made = await create(
        task_client,
        h,
        {"name": "nightly", "target": TASK, "cron": "30 2 * * *", "timezone": "Europe/Paris", "paused": True},
    )
    assert made["paused"] is True and made["next_run_at"] is None and made["runs"] == 0
    assert made["last_run_at"] is None and made["last_task_id"] is None
    sid = made["schedule_id"]

    r = await task_client.patch(f"{P}/schedules/{sid}", json={"paused": False}, headers=h)
    assert r.status_code == 200, r.text
    local = datetime.fromisoformat(r.json()["next_run_at"]).astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) in {(2, 30), (3, 0)}  # 03:00 on the spring-forward night
    assert ts(r.json()["next_run_at"]) > time.time()

    r = await task_client.patch(
        f"{P}/schedules/{sid}", json={"every_seconds": 60, "name": "minutely"}, headers=h
    )
    body = r.json()
    assert (
        r.status_code == 200
        and body["cron"] is None
        and body["every_seconds"] == 60
        and body["name"] == "minutely"
    )
    assert 55 <= ts(body["next_run_at"]) - time.time() <= 61

    listed = (await task_client.get(f"{P}/schedules", headers=h)).json()
    assert listed["count"] == 1 and listed["schedules"][0]["schedule_id"] == sid

    r = await task_client.delete(f"{P}/schedules/{sid}", headers=h)
    assert r.status_code == 204 and r.content == b""
    assert (await task_client.get(f"{P}/schedules/{sid}", headers=h)).status_code == 404
    assert (await task_client.get(f"{P}/schedules/", headers=h)).json()["count"] == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            {"target": {"path": "background-task", "body": {"task_type": "nope"}}, "every_seconds": 5},
            "unknown_task_type",
        ),
        (
            {"target": {"path": "long-running-task", "body": {"steps": 0}}, "every_seconds": 5},
            "validation_error",
        ),
        (
            {
                "target": {"path": "background-task", "body": {"task_type": "data_processing", "bogus": 1}},
                "every_seconds": 5,
            },
            "validation_error",
        ),
        ({"target": TASK, "cron": "61 * * * *"}, "invalid_cron"),
        ({"target": TASK, "cron": "* * *"}, "invalid_cron"),
        ({"target": TASK, "cron": "* * * * *", "timezone": "Mars/Olympus"}, "invalid_timezone"),
        ({"target": TASK, "every_seconds": 4}, "validation_error"),
        ({"target": TASK, "every_seconds": 5, "cron": "* * * * *"}, "invalid_schedule"),
        ({"target": TASK}, "invalid_schedule"),
    ],
)
async def test_schedule_refuses_bad_target_body_cron_timezone_and_interval_with_422(
    task_client, auth, body, code
) -> None:
    h = auth(uniq("bad"), "tasks")
    r = await task_client.post(f"{P}/schedules/", json={"name": "x", **body}, headers=h)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code, r.text
    assert (await task_client.get(f"{P}/schedules/", headers=h)).json()["count"] == 0


async def test_schedule_needs_the_tasks_scope_and_the_targets_scope(task_client, auth) -> None:
    r = await task_client.post(f"{P}/schedules/", json=every5("x"), headers=auth(uniq("noscope"), "cache"))
    assert r.status_code == 403, r.text
    scrape = {"name": "x", "target": {"path": "background-scraping", "body": {}}, "every_seconds": 5}
    r = await task_client.post(f"{P}/schedules/", json=scrape, headers=auth(uniq("noscrape"), "tasks"))
    assert r.status_code == 403, r.text


async def test_another_users_schedule_is_404_for_read_edit_and_delete(task_client, auth) -> None:
    mine = await create(task_client, auth(uniq("owner"), "tasks"), every5("mine", paused=True))
    other = auth(uniq("other"), "tasks")
    sid = mine["schedule_id"]
    assert (await task_client.get(f"{P}/schedules/{sid}", headers=other)).status_code == 404
    assert (
        await task_client.patch(f"{P}/schedules/{sid}", json={"paused": False}, headers=other)
    ).status_code == 404
    assert (await task_client.delete(f"{P}/schedules/{sid}", headers=other)).status_code == 404
    assert (await task_client.get(f"{P}/schedules/", headers=other)).json()["count"] == 0


async def test_one_schedule_beyond_max_schedules_per_user_is_429_too_many_schedules(
    task_client, auth
) -> None:
    h = auth(uniq("many"), "tasks")
    results = await asyncio.gather(
        *(
            task_client.post(f"{P}/schedules/", json=every5(f"s{i}", paused=True), headers=h)
            for i in range(101)
        )
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [201] * 100 + [429]
    refused = next(r for r in results if r.status_code == 429)
    assert refused.json()["error"]["code"] == "too_many_schedules" and refused.headers["Retry-After"]
    assert (await task_client.get(f"{P}/schedules/", headers=h)).json()["count"] == 100


async def test_every_5s_fires_each_tick_once_with_two_schedulers_and_paused_resumed_deleted(
    task_client, auth, task_stack, schedulers
) -> None:
    """Two schedulers race for every tick; each tick runs once, as an ordinary task of the owner."""
    (_, metrics_a), (_, metrics_b) = (
        start_scheduler(task_stack, schedulers),
        start_scheduler(task_stack, schedulers),
    )
    ha, hp, hd = (auth(uniq(n), "tasks") for n in ("active", "paused", "deleted"))
    active = await create(task_client, ha, every5("active"))
    paused = await create(task_client, hp, every5("paused", paused=True))
    deleted = await create(task_client, hd, every5("deleted"))
    first = ts(active["next_run_at"])
    end = first + 10 + 2.5  # ticks at first, first+5, first+10: three

    # The third schedule: deleted after its first run, it runs no more.
    while (d := await get(task_client, hd, deleted["schedule_id"]))["runs"] == 0:
        assert time.time() < first + 5, d
        await asyncio.sleep(0.2)
    assert (
        await task_client.delete(f"{P}/schedules/{deleted['schedule_id']}", headers=hd)
    ).status_code == 204

    # The paused one resumes, now every 10 s: one tick of it (counted from now) falls before the end.
    r = await task_client.patch(
        f"{P}/schedules/{paused['schedule_id']}", json={"paused": False, "every_seconds": 10}, headers=hp
    )
    assert r.status_code == 200 and r.json()["runs"] == 0, r.text
    assert ts(r.json()["next_run_at"]) < end - 1, r.text

    await sleep_until(end)
    got = await get(task_client, ha, active["schedule_id"])
    runs = got["runs"]
    assert abs(runs - 3) <= 1, got
    ticks_due = int((time.time() - first) // 5) + 1
    assert runs <= ticks_due  # a tick run twice would show more runs than ticks
    tasks = await tasks_settle(task_client, ha, runs)
    assert len(tasks) == runs  # one task per run, each the owner's own
    assert got["last_task_id"] in {t["task_id"] for t in tasks}
    assert {t["task_type"] for t in tasks} == {"data_processing"}
    fired = sum(
        sample_value(httpx.get(m).text, "smartapp_schedule_runs_total", {"outcome": "fired"})
        for m in (metrics_a, metrics_b)
    )
    assert fired == runs + 1 + 1  # plus the deleted schedule's one run and the resumed one's

    assert (await get(task_client, hp, paused["schedule_id"]))["runs"] == 1
    assert len(await tasks_settle(task_client, hp, 1)) == 1
    assert len(await tasks_settle(task_client, hd, 1)) == 1
    # Schedules left active would run under the next test's schedulers and count in its metrics.
    for headers, made in ((ha, active), (hp, paused)):
        r = await task_client.delete(f"{P}/schedules/{made['schedule_id']}", headers=headers)
        assert r.status_code == 204


async def test_scheduler_killed_and_restarted_runs_missed_ticks_once_not_as_a_burst(
    task_client, auth, task_stack, schedulers, wait
) -> None:
    proc, _ = start_scheduler(task_stack, schedulers)
    h = auth(uniq("killed"), "tasks")
    made = await create(task_client, h, every5("survivor"))
    sid, first = made["schedule_id"], ts(made["next_run_at"])
    while (await get(task_client, h, sid))["runs"] == 0:
        assert time.time() < first + 5
        await asyncio.sleep(0.2)
    # Its task run too: this test is about the ticks missed while none ran (a run cut short
    # between claim and queue is the next tests').
    [first_task] = await tasks_settle(task_client, h, 1)
    await wait(task_client, first_task["task_id"], h, {"SUCCESS"})
    assert time.time() < first + 5, "the first run took until the next tick"
    proc.kill()  # SIGKILL: no goodbye

    await sleep_until(first + 16)  # the ticks at first+5, +10 and +15 pass with no scheduler
    _, metrics = start_scheduler(task_stack, schedulers)
    deadline = time.time() + 10
    while (got := await get(task_client, h, sid))["runs"] == 1:
        assert time.time() < deadline, got
        await asyncio.sleep(0.1)
    assert got["runs"] == 2, got  # the missed ticks ran once, not three times
    next_run = ts(got["next_run_at"])
    assert next_run > time.time()  # the next tick is after now, on the schedule's grid
    assert (next_run - first) % 5 == pytest.approx(0, abs=0.01)
    assert len(await tasks_settle(task_client, h, 2)) == 2
    text = await metric_settles(metrics, "smartapp_schedule_runs_total", {"outcome": "fired"}, 1)
    # Missed: the ticks after the one run (first+5) and before the next run.
    assert sample_value(text, "smartapp_schedule_ticks_skipped_total") == round((next_run - first) / 5) - 2
    assert sample_value(text, "smartapp_schedule_runs_total", {"outcome": "fired"}) == 1
    assert (await task_client.delete(f"{P}/schedules/{sid}", headers=h)).status_code == 204


async def claim_as_a_crashed_scheduler(r: aioredis.Redis, schedule_id: str, orphans: list[str]) -> Run:
    """What a scheduler killed between claim and publish leaves: the tick claimed (the schedule
    counts the run and names its task), the run in flight since longer than the lease."""
    schedules = Schedules(r)
    doc = await schedules.get(schedule_id)
    assert doc is not None and doc["next_run"] is not None
    due = doc["next_run"]
    claimed_ms = to_ms(time.time()) - LEASE_MS - 5_000
    task_id = str(uuid.uuid4())
    orphans.append(task_id)
    run = await schedules.claim(doc, due, due + doc["every_seconds"] * 1000, task_id, claimed_ms)
    assert run is not None
    return run


async def in_flight_settles(r: aioredis.Redis, task_id: str, timeout: float = 10) -> set[str]:
    deadline = time.time() + timeout
    while task_id in (left := await Schedules(r).in_flight()) and time.time() < deadline:
        await asyncio.sleep(0.1)
    return left


@pytest.mark.parametrize("recorded", [False, True], ids=["nothing-written", "recorded-not-queued"])
async def test_tick_claimed_by_a_scheduler_killed_before_publishing_runs_once_with_its_task_id(
    task_client, auth, task_stack, schedulers, orphans, wait, recorded
) -> None:
    """Two schedulers find the dead one's run: one takes it over, its task runs once, under the
    id the claim gave it. recorded-not-queued: the dead one had written the task record (PENDING)
    and died before the task reached its queue."""
    owner = uniq("orphan")
    h = auth(owner, "tasks")
    made = await create(task_client, h, {"name": "orphan", "target": TASK, "every_seconds": 3600})
    sid = made["schedule_id"]
    async with aioredis.Redis.from_url(os.environ["REDIS_URL"]) as r:
        run = await claim_as_a_crashed_scheduler(r, sid, orphans)
        if recorded:
            record = {
                "task_id": run.task_id,
                "owner": owner,
                "task_type": "data_processing",
                "queue": "default",
            }
            await TaskRecords(r, 3600).create(record)
            assert [t["status"] for t in await tasks_of(task_client, h)] == ["PENDING"]
        else:
            assert await tasks_of(task_client, h) == []
        got = await get(task_client, h, sid)
        assert got["runs"] == 1 and got["last_task_id"] == run.task_id, got

        (_, metrics_a), (_, metrics_b) = (
            start_scheduler(task_stack, schedulers),
            start_scheduler(task_stack, schedulers),
        )
        tasks = await tasks_settle(task_client, h, 1)
        assert [t["task_id"] for t in tasks] == [run.task_id]
        done = await wait(task_client, run.task_id, h, {"SUCCESS"})
        assert done["attempts"] == 1 and done["task_type"] == "data_processing", done
        assert run.task_id not in await in_flight_settles(r, run.task_id)

    await asyncio.sleep(1.5)  # three more loops of each scheduler: nothing more is submitted
    assert [t["task_id"] for t in await tasks_of(task_client, h)] == [run.task_id]
    got = await get(task_client, h, sid)
    assert got["runs"] == 1 and got["last_task_id"] == run.task_id, got
    texts = [httpx.get(m).text for m in (metrics_a, metrics_b)]
    assert sum(sample_value(t, "smartapp_schedule_runs_recovered_total") for t in texts) == 1
    assert sum(sample_value(t, "smartapp_schedule_runs_total", {"outcome": "fired"}) for t in texts) == 1
    assert (await task_client.delete(f"{P}/schedules/{sid}", headers=h)).status_code == 204


@pytest.mark.parametrize("countdown", [None, 60], ids=["finished", "waiting-in-its-queue"])
async def test_run_left_in_flight_after_its_task_was_queued_is_not_submitted_again(
    task_client, auth, task_stack, schedulers, orphans, wait, countdown
) -> None:
    """A scheduler killed after publishing, before it took the run out of flight: the one that
    takes the run over finds its task queued and submits nothing. waiting-in-its-queue: the
    task (a countdown) is still PENDING in its fair queue when the run is taken over."""
    from task_service.scheduler import Scheduler
    from task_service.settings import TaskSettings

    owner = uniq("published")
    h = auth(owner, "tasks")
    body: dict[str, object] = {**TASK["body"], "countdown": countdown} if countdown else TASK["body"]
    target = {"path": "background-task", "body": body}
    made = await create(task_client, h, {"name": "published", "target": target, "every_seconds": 3600})
    sid = made["schedule_id"]
    want = {"PENDING"} if countdown else {"SUCCESS"}
    dead = Scheduler(TaskSettings())
    try:
        run = await claim_as_a_crashed_scheduler(dead.redis, sid, orphans)
        await dead.submit(run)  # queued; the process "dies" before schedules.finish()
        before = await wait(task_client, run.task_id, h, want)
        assert run.task_id in await dead.schedules.in_flight()

        _, metrics = start_scheduler(task_stack, schedulers)
        assert run.task_id not in await in_flight_settles(dead.redis, run.task_id)
    finally:
        await dead.redis.aclose()
    await asyncio.sleep(1.0)  # two more loops: nothing more is submitted
    tasks = await tasks_of(task_client, h)
    assert [t["task_id"] for t in tasks] == [run.task_id]
    status = await wait(task_client, run.task_id, h, want)
    # The same record: not written again, and the task not run again.
    same = ("attempts", "created_at", "started_at", "finished_at")
    assert {k: status[k] for k in same} == {k: before[k] for k in same}, status
    assert status["attempts"] == (0 if countdown else 1), status
    text = httpx.get(metrics).text
    assert sample_value(text, "smartapp_schedule_runs_recovered_total") == 1
    assert sample_value(text, "smartapp_schedule_runs_total", {"outcome": "fired"}) == 0
    assert (await task_client.delete(f"{P}/schedules/{sid}", headers=h)).status_code == 204
    if countdown:
        r = await task_client.post(f"{P}/task-cancel/{run.task_id}", headers=h)
        assert r.status_code == 202, r.text
        await wait(task_client, run.task_id, h, {"REVOKED"})


async def test_run_left_in_flight_of_a_schedule_deleted_since_is_dropped(
    task_client, auth, task_stack, schedulers, orphans
) -> None:
    h = auth(uniq("gone"), "tasks")
    made = await create(task_client, h, {"name": "gone", "target": TASK, "every_seconds": 3600})
    async with aioredis.Redis.from_url(os.environ["REDIS_URL"]) as r:
        run = await claim_as_a_crashed_scheduler(r, made["schedule_id"], orphans)
        assert (
            await task_client.delete(f"{P}/schedules/{made['schedule_id']}", headers=h)
        ).status_code == 204
        _, metrics = start_scheduler(task_stack, schedulers)
        assert run.task_id not in await in_flight_settles(r, run.task_id)
    await asyncio.sleep(1.0)
    assert await tasks_of(task_client, h) == []
    text = httpx.get(metrics).text
    assert sample_value(text, "smartapp_schedule_runs_recovered_total") == 0
    assert sample_value(text, "smartapp_schedule_runs_total", {"outcome": "fired"}) == 0
