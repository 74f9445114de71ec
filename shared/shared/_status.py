"""A task's statuses: the one definition every service, script and worker reads."""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    """A task's status as the API reports it (a str: compares equal to its name)."""

    PENDING = "PENDING"
    STARTED = "STARTED"
    PROGRESS = "PROGRESS"
    RETRY = "RETRY"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"


STATUSES: tuple[str, ...] = tuple(TaskState)
# Final: nothing changes a record once it has one of these (the Lua scripts get this set too).
TERMINAL_STATUSES: frozenset[str] = frozenset(
    {TaskState.SUCCESS, TaskState.FAILURE, TaskState.REVOKED, TaskState.EXPIRED}
)
# Ends that can be replayed: their records (with their inputs) are kept FAILED_RETENTION_DAYS.
REPLAYABLE_STATUSES: frozenset[str] = frozenset({TaskState.FAILURE, TaskState.REVOKED, TaskState.EXPIRED})
