"""`Client`: the platform's API over httpx, blocking.

Its endpoints are `BaseClient`'s (written once for both clients); what is its own is the
transport: sending with retries, and following the task and inbox streams.
`AsyncClient` (`_async_client.py`) is the same for asyncio.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Generator
from typing import ClassVar, TypeVar

import httpx
from httpx_sse import ServerSentEvent, connect_sse

from smartapp._api_notifications import INBOX_STREAM_PATH
from smartapp._base import BaseClient
from smartapp._call import Call
from smartapp._models import TERMINAL, InboxItem, TaskAccepted, TaskEvent
from smartapp._stream import BROKEN, FINAL_ERRORS, Follow, InboxFollow, check_stream, final_event
from smartapp._tasks import TaskHandle

T = TypeVar("T")


class Client(BaseClient[httpx.Client, httpx.BaseTransport]):
    """The platform's API over httpx, blocking. Use as a context manager, or call `close()`.

    `Client(base_url, token=..., timeout=30, max_retries=3, max_retry_wait=30, stream=StreamPolicy(),
    headers=None, transport=None)`; every endpoint is a method (see the package's README).
    """

    is_async: ClassVar[bool] = False

    def _connect(
        self, *, headers: dict[str, str], timeout: float, transport: httpx.BaseTransport | None
    ) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(self, call: Call[T]) -> T:
        for attempt in itertools.count():
            try:
                response = self._http.request(call.method, call.path, **call.request())
            except httpx.TransportError as exc:
                time.sleep(self._wait_after(call, exc, attempt))
                continue
            if response.is_success:
                return call.parse(response)
            time.sleep(self._wait_after(call, response, attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _handle(self, task_id: str, accepted: TaskAccepted | None = None) -> TaskHandle:
        return TaskHandle(self, task_id, accepted)

    def task(self, task_id: str) -> TaskHandle:
        """A handle on an existing task (no request is made)."""
        return self._handle(task_id)

    def events(self, task_id: str, *, timeout: float | None = None) -> Generator[TaskEvent, None, None]:
        """Follow `GET /task-events/{id}`: reconnect when the connection drops, poll when streaming fails."""
        follow = Follow(task_id, timeout, self._stream_policy)
        while follow.streaming:
            try:
                with contextlib.closing(self._sse(follow.path, follow.read_timeout())) as stream:
                    for sse in stream:
                        if (event := follow.streamed(sse)) is not None:
                            yield event
                        if follow.done:
                            return
                follow.ended()
            except FINAL_ERRORS:
                raise
            except BROKEN as exc:
                time.sleep(follow.failed(exc))
        while True:
            progress = self.get_progress(task_id)
            if progress.status in TERMINAL:
                yield final_event(self.get_task(task_id))
                return
            if (news := follow.polled(progress)) is not None:
                yield news
            time.sleep(follow.poll_wait())

    def _sse(
        self, path: str, read_timeout: httpx.Timeout, headers: dict[str, str] | None = None
    ) -> Generator[ServerSentEvent, None, None]:
        """The events of one `text/event-stream` answer; an error answer raised as `check_stream` says."""
        with connect_sse(
            self._http, "GET", path, headers=dict(headers or {}), timeout=read_timeout
        ) as source:
            if source.response.status_code != 200:
                source.response.read()
            check_stream(source.response)
            yield from source.iter_sse()

    def follow_inbox(self, *, since: int | None = None) -> Generator[InboxItem, None, None]:
        """`GET /inbox/stream`, forever: new notifications; reconnects resume after the last seen."""
        follow = InboxFollow(since, self._stream_policy)
        while True:
            try:
                stream = self._sse(INBOX_STREAM_PATH, follow.read_timeout(), follow.headers())
                with contextlib.closing(stream):
                    for sse in stream:
                        if (item := follow.item(sse)) is not None:
                            yield item
            except FINAL_ERRORS:
                raise
            except BROKEN as exc:
                time.sleep(follow.failed(exc))
