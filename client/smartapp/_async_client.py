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
from httpx_sse import SSEError, aconnect_sse

from smartapp._api_notifications import INBOX_STREAM_PATH
from smartapp._base import FINAL_ERRORS, BaseClient
from smartapp._call import Call, seg
from smartapp._errors import APIError
from smartapp._models import TERMINAL, InboxItem, TaskAccepted, TaskEvent
from smartapp._stream import (
    Follow,
    InboxFollow,
    StreamUnavailable,
    final_event,
    inbox_item,
    progress_event,
    task_event,
)
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
                async with contextlib.aclosing(self._stream_events(follow)) as stream:
                    async for event in stream:
                        if follow.streamed(event):
                            yield event
                        if event.final is not None:
                            return
                        follow.check()
                follow.ended()
            except FINAL_ERRORS:
                raise
            except StreamUnavailable:
                follow.refused()
            except (httpx.TransportError, SSEError, APIError):
                await asyncio.sleep(follow.failed())
        while True:
            progress = await self.get_progress(task_id)
            if progress.status in TERMINAL:
                yield final_event(await self.get_task(task_id))
                return
            event = progress_event(progress)
            if follow.fresh(event):
                yield event
            await asyncio.sleep(follow.poll_wait())

    async def _stream_events(self, follow: Follow) -> AsyncGenerator[TaskEvent, None]:
        path = f"/task-events/{seg(follow.task_id)}"
        async with aconnect_sse(self._http, "GET", path, timeout=follow.read_timeout()) as source:
            if source.response.status_code != 200:
                await source.response.aread()
            self._check_stream(source.response)
            async for sse in source.aiter_sse():
                event = task_event(follow.task_id, sse)
                if event is not None:
                    yield event

    async def follow_inbox(self, *, since: int | None = None) -> AsyncGenerator[InboxItem, None]:
        """`GET /inbox/stream`, forever: new notifications; reconnects resume after the last seen."""
        follow = InboxFollow(since, self._stream_policy)
        while True:
            try:
                async with aconnect_sse(
                    self._http,
                    "GET",
                    INBOX_STREAM_PATH,
                    headers=follow.headers(),
                    timeout=follow.read_timeout(),
                ) as source:
                    if source.response.status_code != 200:
                        await source.response.aread()
                    self._check_stream(source.response)
                    async for sse in source.aiter_sse():
                        item = inbox_item(sse)
                        if item is not None:
                            follow.seen(item)
                            yield item
            except FINAL_ERRORS:
                raise
            except (httpx.TransportError, SSEError, APIError, StreamUnavailable) as exc:
                await asyncio.sleep(follow.failed(exc))
