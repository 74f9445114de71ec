"""Task records against the real Redis: ordering, finality, merging with Celery's result."""

from __future__ import annotations

import os
import uuid

import orjson
import pytest
import redis
import redis.asyncio as aioredis

from shared import BaseServiceSettings, Principal, TaskRecords, TaskState
from shared._errors import NotFound
from shared._fairq import FairQueue
from shared._records import (
    CELERY_META_PREFIX,
    SyncTaskRecords,
    celery_result,
    merge_status,
    now_iso,
    progress_view,
)


@pytest.fixture
def sync_records():
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    yield SyncTaskRecords(client, 60)
    client.close()


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


async def test_progress_never_goes_backwards(records, sync_records) -> None:
    tid = await new_task(records)
    assert sync_records.progress(tid, 5, 10, "five", seq=5)
    assert not sync_records.progress(tid, 3, 10, "late three", seq=3)  # an older update arrives late
    assert not sync_records.progress(tid, 5, 10, "repeat", seq=5)
    assert sync_records.progress(tid, 6, 10, "six", seq=6)
    view = await records.progress(await records.get(tid))
    assert view["current"] == 6 and view["message"] == "six" and view["percent"] == 60.0


async def test_final_status_is_final(records, sync_records) -> None:
    tid = await new_task(records)
    assert sync_records.mark(tid, "STARTED", count_attempt=True, started_at="s") == 1
    assert sync_records.mark(tid, "SUCCESS", finished_at="f", result={"ok": True}) == 1
    # a redelivered copy starting late, or reporting progress, cannot reopen it
    assert sync_records.mark(tid, "STARTED", count_attempt=True) == 0
    assert not sync_records.progress(tid, 1, 2, None, seq=99)
    status = await records.status(await records.get(tid))
    assert status["status"] == "SUCCESS" and status["result"] == {"ok": True}
    assert sync_records.mark("no-such-task", "STARTED") == -1


async def test_other_users_task_is_not_found(records) -> None:
    tid = await new_task(records, owner="alice")
    with pytest.raises(NotFound):
        await records.get_for(Principal("bob", frozenset({"tasks"})), tid)
    with pytest.raises(NotFound):
        await records.get_for(Principal("alice", frozenset({"tasks"})), "x" * 101)
    assert (await records.get_for(Principal("root", frozenset({"admin"})), tid))["owner"] == "alice"


async def test_celery_result_corrects_a_stale_record(records) -> None:
    tid = await new_task(records)
    meta = {"status": "FAILURE", "result": {"exc_type": "TimeLimitExceeded", "exc_message": "hard limit"}}
    await records.r.set(CELERY_META_PREFIX + tid, orjson.dumps(meta))
    status = await records.status(await records.get(tid))
    assert status["status"] == "FAILURE"
    assert status["error"] == {"type": "TimeLimitExceeded", "message": "hard limit"}


def test_merge_keeps_record_when_final() -> None:
    record = {"task_id": "a", "status": "REVOKED", "error": {"type": "Revoked", "message": "m"}}
    assert merge_status(record, {"status": "SUCCESS", "result": 1})["status"] == "REVOKED"


def test_progress_view_percent() -> None:
    assert progress_view("a", "PROGRESS", {"current": "1", "total": "3"})["percent"] == 33.33
    assert progress_view("a", "SUCCESS", {})["percent"] == 100.0
    assert progress_view("a", "PENDING", {})["percent"] == 0.0


def succeed(sync_records: SyncTaskRecords, tid: str, result: object) -> int:
    """What a worker's on_success writes: the record, Celery's result, the fair queue's end."""
    fq = FairQueue(sync_records.r, BaseServiceSettings(), "records-test")
    finished_at = now_iso()
    fields = {"finished_at": finished_at, "result": result}
    updated, popped = fq.end(
        tid,
        sync_records.end_args(tid, TaskState.SUCCESS, fields),
        celery_result(tid, result, finished_at),
        expires=60,
    )
    assert popped == []  # no worker: the test queue's window is empty
    return updated


async def test_succeed_writes_record_and_celery_result_in_one_step(records, sync_records) -> None:
    from celery import Celery

    tid = await new_task(records)
    assert sync_records.mark(tid, "STARTED", count_attempt=True) == 1
    assert succeed(sync_records, tid, {"answer": 42}) == 1
    status = await records.status(await records.get(tid))
    assert status["status"] == "SUCCESS" and status["result"] == {"answer": 42}
    # Celery itself reads the result we wrote
    app = Celery("reader", backend=os.environ["REDIS_URL"])
    result = app.AsyncResult(tid)
    assert result.state == "SUCCESS" and result.get(timeout=1) == {"answer": 42}
    app.backend.client.close()
    # a task cancelled while running stays REVOKED even if its last step completes
    other = await new_task(records)
    sync_records.mark(other, "REVOKED", finished_at="f")
    assert succeed(sync_records, other, {"late": True}) == 0
    assert (await records.status(await records.get(other)))["status"] == "REVOKED"
