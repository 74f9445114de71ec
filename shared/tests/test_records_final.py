"""Once a task is final, or its owner asked to cancel it, its progress is frozen (real Redis)."""

from __future__ import annotations

import os
import uuid

import pytest
import redis

from shared._records import SyncTaskRecords, events_channel, prog_key, rec_key


@pytest.fixture
def sync_records():
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    yield SyncTaskRecords(client, 60)
    client.close()


def started(records: SyncTaskRecords) -> str:
    tid = f"final-{uuid.uuid4()}"
    records.r.hset(rec_key(tid), mapping={"task_id": tid, "status": "PENDING", "owner": "u"})
    records.begin(tid, "w1")
    assert records.progress(tid, 1, 5, "step 1", 1)
    return tid


@pytest.mark.parametrize("status", ["SUCCESS", "FAILURE", "REVOKED", "EXPIRED"])
def test_progress_after_a_final_status_is_refused_and_not_published(sync_records, status: str) -> None:
    tid = started(sync_records)
    assert sync_records.mark(tid, status) == 1
    with sync_records.r.pubsub() as ps:
        ps.subscribe(events_channel(tid))
        assert ps.get_message(timeout=1)["type"] == "subscribe"
        assert sync_records.progress(tid, 2, 5, "step 2", 2) is False
        assert sync_records.mark(tid, "PROGRESS") == 0  # no status after the final one either
        assert ps.get_message(timeout=0.3) is None
    assert sync_records.r.hget(prog_key(tid), "current") == b"1"
    assert sync_records.r.hget(rec_key(tid), "status") == status.encode()


def test_progress_after_a_cancel_request_is_refused(sync_records) -> None:
    tid = started(sync_records)
    sync_records.r.hset(rec_key(tid), "cancel", "1")  # what the API's cancel writes
    assert sync_records.progress(tid, 2, 5, "step 2", 2) is False
    assert sync_records.report(tid, 3, 5, "step 3", 3) == -1  # what report_progress raises on
    assert sync_records.r.hget(prog_key(tid), "current") == b"1"
    assert sync_records.is_cancelled(tid)
