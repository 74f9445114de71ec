"""merge_status reads Celery's stored failure the way our own record words it."""

from __future__ import annotations

from shared import merge_status


def test_a_failure_known_only_to_celery_reads_its_message_not_the_args_list() -> None:
    record = {"task_id": "t1", "status": "STARTED", "task_type": "fail", "queue": "default"}
    meta = {"status": "FAILURE", "result": {"exc_type": "FailedOnPurpose", "exc_message": ["again"]}}
    view = merge_status(record, meta)
    assert view["status"] == "FAILURE"
    assert view["error"] == {"type": "FailedOnPurpose", "message": "again"}


def test_our_final_record_wins_over_celery() -> None:
    record = {"task_id": "t2", "status": "SUCCESS", "result": {"ok": 1}}
    meta = {"status": "FAILURE", "result": {"exc_type": "X", "exc_message": ["late"]}}
    view = merge_status(record, meta)
    assert view["status"] == "SUCCESS" and view["result"] == {"ok": 1} and view["error"] is None
