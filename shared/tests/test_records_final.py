"""Once a task is final, or its owner asked to cancel it, its progress is frozen (real Redis)."""

from __future__ import annotations

import uuid

import pytest

from shared._records import events_channel, prog_key, rec_key


def started(worker) -> str:
    tid = f"final-{uuid.uuid4()}"
    worker.r.hset(rec_key(tid), mapping={"task_id": tid, "status": "PENDING", "owner": "u"})
    assert not worker.call(worker.records.is_cancelled(tid))
    worker.call(worker.records.begin(tid, "w1"))
    assert worker.call(worker.records.progress(tid, 1, 5, "step 1", 1))
    return tid


@pytest.mark.parametrize("status", ["SUCCESS", "FAILURE", "REVOKED", "EXPIRED"])
def test_progress_after_a_final_status_is_refused_and_not_published(worker, status: str) -> None:
    tid = started(worker)
    assert worker.call(worker.records.mark(tid, status)) == 1
    with worker.r.pubsub() as ps:
        ps.subscribe(events_channel(tid))
        assert ps.get_message(timeout=1)["type"] == "subscribe"
        assert worker.call(worker.records.progress(tid, 2, 5, "step 2", 2)) is False
        # no status after the final one either
        assert worker.call(worker.records.mark(tid, "PROGRESS")) == 0
        assert ps.get_message(timeout=0.3) is None
    assert worker.r.hget(prog_key(tid), "current") == b"1"
    assert worker.r.hget(rec_key(tid), "status") == status.encode()


def test_progress_after_a_cancel_request_is_refused(worker) -> None:
    tid = started(worker)
    worker.r.hset(rec_key(tid), "cancel", "1")  # what the API's cancel writes
    assert worker.call(worker.records.progress(tid, 2, 5, "step 2", 2)) is False
    assert worker.call(worker.records.report(tid, 3, 5, "step 3", 3)) == -1  # what report_progress raises on
    assert worker.r.hget(prog_key(tid), "current") == b"1"
    assert worker.call(worker.records.is_cancelled(tid))
