"""What both clients share about streams and retries: reading events, how long to wait, what to do next."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent, SSEError

from smartapp._errors import (
    APIError,
    Forbidden,
    NotFound,
    TransportError,
    Unauthorized,
    WaitTimeout,
    error_from_response,
    parse_retry_after,
)
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


# Refusals a reconnect or a poll cannot fix: raised to the caller at once (caught before BROKEN).
FINAL_ERRORS = (NotFound, Unauthorized, Forbidden)
# What a stream may meet that another try (or polling) may get past.
BROKEN = (httpx.TransportError, SSEError, APIError, StreamUnavailable)


def check_stream(response: httpx.Response) -> None:
    """Raise for a stream that answered with an error: final ones as such, others as unavailable."""
    if response.status_code == 200:
        return
    error = error_from_response(response)
    if isinstance(error, FINAL_ERRORS):
        raise error
    raise StreamUnavailable(str(error))


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
        return progress_event({**data, "status": data.get("status") or "PROGRESS"})
    if sse.event == "status":
        if data.get("status") in TERMINAL:
            return final_event(TaskStatus.model_validate(data))
        return TaskEvent(kind="status", task_id=data["task_id"], status=data["status"])
    return None


# What a progress event carries, from a streamed `progress` event or a polled `TaskProgress`.
PROGRESS_FIELDS = ("task_id", "status", "current", "total", "percent", "message")


def progress_event(progress: dict[str, Any]) -> TaskEvent:
    """A progress event out of a `progress` event's data or a polled `TaskProgress`, dumped."""
    return TaskEvent.model_validate(
        {"kind": "progress"} | {name: progress.get(name) for name in PROGRESS_FIELDS}
    )


def final_event(status: TaskStatus) -> TaskEvent:
    return TaskEvent(kind="status", task_id=status.task_id, status=status.status, final=status)


def inbox_item(sse: ServerSentEvent) -> InboxItem | None:
    if sse.event != "notification":
        return None
    return InboxItem.model_validate_json(sse.data)


class Follow:
    """What `events()` does next, for both clients: the socket work is theirs, the decisions are here.

    It streams `task-events` and opens a dropped stream again; after `policy.reconnects`
    failures in a row, or at once when the stream is refused (429/503), it polls
    `task-progress` instead, to the end. Repeats are skipped: a reconnected stream starts
    with a snapshot of the progress already seen.
    """

    def __init__(self, task_id: str, timeout: float | None, policy: StreamPolicy) -> None:
        self.task_id = task_id
        self.deadline = deadline_of(timeout)
        self.policy = policy
        self.last: TaskEvent | None = None
        self.failures = 0
        self.got_any = False
        self.done = False

    @property
    def streaming(self) -> bool:
        return self.failures <= self.policy.reconnects

    def read_timeout(self) -> httpx.Timeout:
        return read_timeout(self.deadline, self.policy)

    @property
    def path(self) -> str:
        return f"/task-events/{quote(self.task_id, safe='')}"

    def streamed(self, sse: ServerSentEvent) -> TaskEvent | None:
        """An event came on the stream: the task event to yield, if it is one and news.

        After the final status `done` is true; before it, past the deadline, `WaitTimeout`.
        """
        event = task_event(self.task_id, sse)
        if event is None:
            return None
        self.got_any, self.failures = True, 0
        self.done = event.final is not None
        if not self.done:
            self.check()  # a busy stream never times out by itself
        return event if self.fresh(event) else None

    def polled(self, progress: TaskProgress) -> TaskEvent | None:
        """A polled progress as an event, when it is news."""
        event = progress_event(progress.model_dump())
        return event if self.fresh(event) else None

    def fresh(self, event: TaskEvent) -> bool:
        if event == self.last:
            return False
        self.last = event
        return True

    def ended(self) -> None:
        """The server closed the stream before the final status: open it again."""
        self.failures += 0 if self.got_any else 1
        self.got_any = False
        self.check()

    def failed(self, exc: Exception) -> float:
        """The stream broke (one of BROKEN): the seconds to wait before the next try.

        Refused (429 too_many_streams, 503): polling instead, at once."""
        refused = isinstance(exc, StreamUnavailable)
        self.failures = self.policy.reconnects + 1 if refused else self.failures + 1
        self.got_any = False
        self.check()
        return 0.0 if refused else min(0.2 * self.failures, 1.0)

    def poll_wait(self) -> float:
        self.check()
        left = remaining(self.deadline)
        return self.policy.poll_interval if left is None else min(self.policy.poll_interval, max(left, 0))

    def check(self) -> None:
        """`WaitTimeout` once the deadline has passed (a busy stream never times out by itself)."""
        left = remaining(self.deadline)
        if left is not None and left <= 0:
            raise WaitTimeout(f"task {self.task_id} did not finish in time")


class InboxFollow:
    """What `follow_inbox()` does next, for both clients: resume after the last seen, give up
    after `policy.reconnects + 2` failures in a row."""

    def __init__(self, since: int | None, policy: StreamPolicy) -> None:
        self.last = since
        self.policy = policy
        self.failures = 0

    def headers(self) -> dict[str, str]:
        return {"Last-Event-ID": str(self.last)} if self.last is not None else {}

    def read_timeout(self) -> httpx.Timeout:
        return read_timeout(None, self.policy)

    def item(self, sse: ServerSentEvent) -> InboxItem | None:
        """The notification an event carries (None for others), remembered as the last seen."""
        found = inbox_item(sse)
        if found is not None:
            self.failures = 0
            self.last = found.seq
        return found

    def failed(self, exc: Exception) -> float:
        self.failures += 1
        if self.failures > self.policy.reconnects + 2:
            raise TransportError(f"the inbox stream keeps failing: {exc}") from exc
        return min(0.5 * self.failures, 5.0)
