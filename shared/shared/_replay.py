"""The checks every replay makes before running a task again, whichever service replays it.

task-service refuses with them before it replays (or hands a scrape to scraping-service), and
scraping-service checks a scrape again when it is asked to replay one: the same answer from both.
"""

from __future__ import annotations

from typing import Any

from shared._errors import AppError, Conflict, Unprocessable
from shared._status import REPLAYABLE_STATUSES, TaskState


def replay_refusal(status: str, inputs: Any, *, has_key: bool, has_headers: bool) -> AppError | None:
    """Why a task in `status` whose record kept `inputs` cannot be replayed now, or None.

    `has_key` and `has_headers` say whether the replay brings an OpenAI key and request headers
    again: a task that needed them had them never kept.
    """
    if status not in REPLAYABLE_STATUSES:
        if status == TaskState.SUCCESS:
            return Conflict("The task succeeded; only failed tasks are replayed.", code="task_succeeded")
        return Conflict(f"The task has not finished ({status}).", code="task_not_finished")
    if not isinstance(inputs, dict):
        return Conflict("This task's inputs were not kept; submit it again.", code="inputs_not_kept")
    if inputs.get("needs_key") and not has_key:
        return Unprocessable(
            "This scrape used your own OpenAI key, which is never kept: send it again as openai_key.",
            code="key_required",
        )
    if inputs.get("needs_headers") and not has_headers:
        return Unprocessable(
            "This scrape sent request headers, which are never kept: send them again as headers.",
            code="headers_required",
        )
    return None
