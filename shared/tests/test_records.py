"""Task records against the real Redis: ordering, finality, merging with Celery's result."""

from __future__ import annotations

import os
import uuid

import pytest
import redis.asyncio as aioredis
from billiard.exceptions import TimeLimitExceeded, WorkerLostError

from shared import BaseServiceSettings, Principal, TaskRecords, TaskState
from shared._errors import NotFound
from shared._fairq import FairQueue
from shared._records import CELERY_META_PREFIX, merge_status, now_iso, progress_view


@pytest.fixture
async def records():
    client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    yield TaskRecords(client, 60)
    await client.aclose()


async def new_task(records: TaskRecords, owner: str = "alice") -> str:
    tid = str(uuid.uuid4())
    await records.create(
        {"task_id": tid, "owner": owner, "task_type": "t", "queue": "default", "created_at": "x"}
    )
    return tid


async def test_progress_never_goes_backwards(records, worker) -> None:
    tid = await new_task(records)
    assert worker.call(worker.records.progress(tid, 5, 10, "five", seq=5))
    assert not worker.call(
        worker.records.progress(tid, 3, 10, "late three", seq=3)
    )  # an older update arrives late
    assert not worker.call(worker.records.progress(tid, 5, 10, "repeat", seq=5))
    assert worker.call(worker.records.progress(tid, 6, 10, "six", seq=6))
    view = await records.progress(await records.get(tid))
    assert view["current"] == 6 and view["message"] == "six" and view["percent"] == 60.0


async def test_final_status_is_final(records, worker) -> None:
    tid = await new_task(records)
    assert worker.call(worker.records.mark(tid, "STARTED", count_attempt=True, started_at="s")) == 1
    assert worker.call(worker.records.mark(tid, "SUCCESS", finished_at="f", result={"ok": True})) == 1
    # a redelivered copy starting late, or reporting progress, cannot reopen it
    assert worker.call(worker.records.mark(tid, "STARTED", count_attempt=True)) == 0
    assert not worker.call(worker.records.progress(tid, 1, 2, None, seq=99))
    status = await records.status(await records.get(tid))
    assert status["status"] == "SUCCESS" and status["result"] == {"ok": True}
    assert worker.call(worker.records.mark("no-such-task", "STARTED")) == -1


async def test_other_users_task_is_not_found(records) -> None:
    tid = await new_task(records, owner="alice")
    with pytest.raises(NotFound):
        await records.get_for(Principal("bob", frozenset({"tasks"})), tid)
    with pytest.raises(NotFound):
        await records.get_for(Principal("alice", frozenset({"tasks"})), "x" * 101)
    assert (await records.get_for(Principal("root", frozenset({"admin"})), tid))["owner"] == "alice"


# Celery's Redis backend still calls redis-py's setex, deprecated there: its warning, not ours.
@pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")
@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (TimeLimitExceeded(12.5), {"type": "TimeLimitExceeded", "message": "12.5"}),
        (
            WorkerLostError("Worker exited prematurely: signal 9 (SIGKILL)."),
            {"type": "WorkerLostError", "message": "Worker exited prematurely: signal 9 (SIGKILL)."},
        ),
    ],
)
async def test_celery_result_corrects_a_stale_record(records, exc, error) -> None:
    """A failure only Celery saw, written by the installed Celery's own backend, is read right.

    The worker's main process records these (a hard time limit, a lost pool process) in
    Celery's result format; merge_status reads that format. A Celery upgrade that changes it
    fails here.
    """
    from celery import Celery

    tid = await new_task(records)
    app = Celery("writer", backend=os.environ["REDIS_URL"])
    try:
        app.backend.mark_as_failure(tid, exc)
    finally:
        app.backend.client.close()
    status = await records.status(await records.get(tid))
    assert status["status"] == "FAILURE"
    assert status["error"] == error


def test_merge_keeps_record_when_final() -> None:
    record = {"task_id": "a", "status": "REVOKED", "error": {"type": "Revoked", "message": "m"}}
    assert merge_status(record, {"status": "SUCCESS", "result": 1})["status"] == "REVOKED"


def test_progress_view_percent() -> None:
    assert progress_view("a", "PROGRESS", {"current": "1", "total": "3"})["percent"] == 33.33
    assert progress_view("a", "SUCCESS", {})["percent"] == 100.0
    assert progress_view("a", "PENDING", {})["percent"] == 0.0


def succeed(worker, tid: str, result: object) -> int:
    """What a worker's on_success writes: the record and the fair queue's end, one script."""
    fq = FairQueue(worker.r, BaseServiceSettings(), "records-test")
    fields = {"finished_at": now_iso(), "result": result}
    updated, popped = fq.end(tid, worker.records.end_args(tid, TaskState.SUCCESS, fields))
    assert popped == []  # no worker: the test queue's window is empty
    return updated


async def test_a_success_is_written_to_the_record_alone(records, worker) -> None:
    tid = await new_task(records)
    assert worker.call(worker.records.mark(tid, "STARTED", count_attempt=True)) == 1
    assert succeed(worker, tid, {"answer": 42}) == 1
    status = await records.status(await records.get(tid))
    assert status["status"] == "SUCCESS" and status["result"] == {"answer": 42}
    # the record is the result store: no Celery result is written by hand (nothing reads one)
    assert not await records.r.exists(CELERY_META_PREFIX + tid)
    # a task cancelled while running stays REVOKED even if its last step completes
    other = await new_task(records)
    worker.call(worker.records.mark(other, "REVOKED", finished_at="f"))
    assert succeed(worker, other, {"late": True}) == 0
    assert (await records.status(await records.get(other)))["status"] == "REVOKED"


async def test_begin_answers_the_record_as_it_was_without_its_inputs(records, worker) -> None:
    tid = str(uuid.uuid4())
    inputs = {"kwargs": {"data": "x" * 1000}}
    await records.create(
        {
            "task_id": tid,
            "owner": "alice",
            "task_type": "t",
            "created_at": "x",
            "inputs": inputs,
            "callback_url": "cb",
        }
    )
    before = worker.call(worker.records.begin(tid, "w1"))
    assert (before["status"], before["attempts"], before["callback_url"]) == ("PENDING", "0", "cb")
    assert "inputs" not in before  # a run never reads it; a replay reads the record itself
    after = await records.get(tid)
    assert (after["status"], after["attempts"], after["worker"], after["inputs"]) == (
        "STARTED",
        "1",
        "w1",
        inputs,
    )
    assert worker.call(worker.records.begin("no-such-task", "w1")) is None
