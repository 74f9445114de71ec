"""`AsyncClient`: `Client` for asyncio, the same methods as coroutines.

Its endpoints are `BaseClient`'s (written once for both clients); what is its own is the
transport: sending with retries, and following the task and inbox streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncGenerator
from typing import ClassVar, TypeVar

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse

from smartapp._api_notifications import INBOX_STREAM_PATH
from smartapp._base import BaseClient
from smartapp._call import Call
from smartapp._models import TERMINAL, InboxItem, TaskAccepted, TaskEvent
from smartapp._stream import BROKEN, FINAL_ERRORS, Follow, InboxFollow, check_stream, final_event
from smartapp._tasks import AsyncTaskHandle

T = TypeVar("T")


class AsyncClient(BaseClient[httpx.AsyncClient, httpx.AsyncBaseTransport]):
    """`Client` for asyncio: the same methods as coroutines. Use `async with`, or `aclose()`."""

    is_async: ClassVar[bool] = True

    def _connect(
        self, *, headers: dict[str, str], timeout: float, transport: httpx.AsyncBaseTransport | None
    ) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def _send(self, call: Call[T]) -> T:
        for attempt in itertools.count():
            try:
                response = await self._http.request(call.method, call.path, **call.request())
            except httpx.TransportError as exc:
                await asyncio.sleep(self._wait_after(call, exc, attempt))
                continue
            if response.is_success:
                return call.parse(response)
            await asyncio.sleep(self._wait_after(call, response, attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _handle(self, task_id: str, accepted: TaskAccepted | None = None) -> AsyncTaskHandle:
        return AsyncTaskHandle(self, task_id, accepted)

    def task(self, task_id: str) -> AsyncTaskHandle:
        """A handle on an existing task (no request is made)."""
        return self._handle(task_id)

    async def events(
        self,
        task_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> AsyncGenerator[TaskEvent, None]:
        """Follow `GET /task-events/{id}`: reconnect when the connection drops, poll when streaming fails."""
        follow = Follow(task_id, timeout, self._stream_policy)
        while follow.streaming:
            try:
                async with contextlib.aclosing(self._sse(follow.path, follow.read_timeout())) as stream:
                    async for sse in stream:
                        if (event := follow.streamed(sse)) is not None:
                            yield event
                        if follow.done:
                            return
                follow.ended()
            except FINAL_ERRORS:
                raise
            except BROKEN as exc:
                await asyncio.sleep(follow.failed(exc))
        while True:
            progress = await self.get_progress(task_id)
            if progress.status in TERMINAL:
                yield final_event(await self.get_task(task_id))
                return
            if (news := follow.polled(progress)) is not None:
                yield news
            await asyncio.sleep(follow.poll_wait())

    async def _sse(
        self, path: str, read_timeout: httpx.Timeout, headers: dict[str, str] | None = None
    ) -> AsyncGenerator[ServerSentEvent, None]:
        """The events of one `text/event-stream` answer; an error answer raised as `check_stream` says."""
        async with aconnect_sse(
            self._http, "GET", path, headers=dict(headers or {}), timeout=read_timeout
        ) as source:
            if source.response.status_code != 200:
                await source.response.aread()
            check_stream(source.response)
            async for sse in source.aiter_sse():
                yield sse

    async def follow_inbox(self, *, since: int | None = None) -> AsyncGenerator[InboxItem, None]:
        """`GET /inbox/stream`, forever: new notifications; reconnects resume after the last seen."""
        follow = InboxFollow(since, self._stream_policy)
        while True:
            try:
                stream = self._sse(INBOX_STREAM_PATH, follow.read_timeout(), follow.headers())
                async with contextlib.aclosing(stream):
                    async for sse in stream:
                        if (item := follow.item(sse)) is not None:
                            yield item
            except FINAL_ERRORS:
                raise
            except BROKEN as exc:
                await asyncio.sleep(follow.failed(exc))
