"""Thin Celery tasks: the work itself lives in kinds.py and is testable without a worker."""

from __future__ import annotations

import time
from typing import Any

from shared import Continuation, PlatformTask, PublicTaskError, TaskCancelled, report_progress
from task_service.kinds import REGISTRY, cancel_check, current_attempt, known_kinds
from task_service.worker import app, settings

CANCEL_POLL_SECONDS = 0.5


@app.task(name="tasks.run_background", bind=True)
def run_background(self: PlatformTask, task_type: str, data: dict[str, Any]) -> dict[str, Any]:
    kind = REGISTRY.get(task_type)
    if kind is None:
        raise PublicTaskError(f"Unknown task_type {task_type!r}; known: {', '.join(known_kinds())}")
    record = getattr(self.request, "platform_record", None) or {}
    tid = self.request.id

    def check() -> None:
        if tid and self.call(self.records.is_cancelled(tid)):
            raise TaskCancelled()

    attempt = current_attempt.set(int(record.get("attempts") or 0) + 1)  # the record as it was before
    checker = cancel_check.set(check)
    try:
        return kind.run(data)
    finally:
        cancel_check.reset(checker)
        current_attempt.reset(attempt)


def _sleep_watching_cancel(task: PlatformTask, seconds: float) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(CANCEL_POLL_SECONDS, left))
        if left > CANCEL_POLL_SECONDS and task.call(task.records.is_cancelled(task.request.id)):
            raise TaskCancelled()


@app.task(name="tasks.long_running", bind=True, max_retries=None)
def long_running(
    self: PlatformTask, steps: int, step_seconds: float, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    # A redelivered task (worker killed, or a handed-over slice) resumes after its last
    # recorded step, so progress never goes backwards and no step is done twice.
    resumed_from = self.call(self.records.last_progress(self.request.id))
    slice_end = time.monotonic() + settings.long_task_slice_seconds
    for step in range(resumed_from, steps):
        _sleep_watching_cancel(self, step_seconds)
        report_progress(self, step + 1, steps, f"step {step + 1} of {steps}")
        if step + 1 < steps and time.monotonic() > slice_end:
            raise self.retry(countdown=0, exc=Continuation())
    return {
        "steps": steps,
        "step_seconds": step_seconds,
        "completed_steps": steps,
        "resumed_from": resumed_from,
        "data": data or {},
    }
