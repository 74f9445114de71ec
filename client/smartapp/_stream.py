"""What both clients share about streams and retries: reading events, and how long to wait."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import ServerSentEvent

from smartapp._errors import parse_retry_after
from smartapp._models import TERMINAL, InboxItem, TaskEvent, TaskProgress, TaskStatus

# Refusals that mean "not processed, try again later" (API.md: both carry Retry-After).
RETRY_STATUSES = frozenset({429, 503})
# Transport failures before the request reached the server: safe to repeat for any method.
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded attempts, capped waits.

    A `Retry-After` longer than `max_wait` is not slept through: the error is raised at once
    with its `retry_after`, so a caller is never blocked for minutes by a library.
    """

    max_retries: int = 3
    max_wait: float = 30.0
    backoff: float = 0.5

    def wait_for_status(self, response: httpx.Response, attempt: int) -> float | None:
        if response.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
            return None
        after = parse_retry_after(response.headers.get("Retry-After"))
        if after is None:
            after = float(self.backoff * 2**attempt)
        return after if after <= self.max_wait else None

    def wait_for_transport(self, exc: httpx.TransportError, safe: bool, attempt: int) -> float | None:
        if attempt >= self.max_retries or not (safe or isinstance(exc, NEVER_SENT)):
            return None
        return float(min(self.backoff * 2**attempt, self.max_wait))


@dataclass(frozen=True)
class StreamPolicy:
    """How `events()` follows a task: reconnect a dropped stream, then fall back to polling."""

    reconnects: int = 3
    poll_interval: float = 0.5
    # The server sends a keep-alive every 15 s: a read quiet for longer means a dead connection.
    read_timeout: float = 40.0


class StreamUnavailable(Exception):
    """The event stream could not be used (429 too_many_streams, 503, not an event stream)."""


def deadline_of(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def read_timeout(deadline: float | None, policy: StreamPolicy) -> httpx.Timeout:
    left = remaining(deadline)
    read = policy.read_timeout if left is None else max(0.05, min(left, policy.read_timeout))
    return httpx.Timeout(10.0, read=read)


def task_event(task_id: str, sse: ServerSentEvent) -> TaskEvent | None:
    """A `task-events` SSE event as a TaskEvent; None for events this client does not know."""
    try:
        data: dict[str, Any] = json.loads(sse.data)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    data.setdefault("task_id", task_id)
    if sse.event == "progress":
        return TaskEvent(
            kind="progress",
            task_id=data["task_id"],
            status=data.get("status") or "PROGRESS",
            current=data.get("current"),
            total=data.get("total"),
            percent=data.get("percent"),
            message=data.get("message"),
        )
    if sse.event == "status":
        if data.get("status") in TERMINAL:
            return final_event(TaskStatus.model_validate(data))
        return TaskEvent(kind="status", task_id=data["task_id"], status=data["status"])
    return None


def progress_event(p: TaskProgress) -> TaskEvent:
    return TaskEvent(
        kind="progress",
        task_id=p.task_id,
        status=p.status,
        current=p.current,
        total=p.total,
        percent=p.percent,
        message=p.message,
    )


def final_event(status: TaskStatus) -> TaskEvent:
    return TaskEvent(kind="status", task_id=status.task_id, status=status.status, final=status)


def inbox_item(sse: ServerSentEvent) -> InboxItem | None:
    if sse.event != "notification":
        return None
    return InboxItem.model_validate_json(sse.data)
