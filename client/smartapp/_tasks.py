"""Task handles: a task you started (or named by id), its status, progress, events and `wait()`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING

from smartapp._errors import WaitTimeout
from smartapp._models import CancelAccepted, TaskAccepted, TaskEvent, TaskProgress, TaskStatus

if TYPE_CHECKING:
    from smartapp._async_client import AsyncClient
    from smartapp._client import Client


class _Handle:
    def __init__(self, task_id: str, accepted: TaskAccepted | None) -> None:
        self.task_id = task_id
        self.accepted = accepted  # the submission's 202 (None for a handle made from an id)
        self.request_id = accepted.request_id if accepted else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.task_id!r})"

    def _not_finished(self) -> WaitTimeout:  # pragma: no cover: events() raises first
        return WaitTimeout(f"task {self.task_id} did not finish")


class TaskHandle(_Handle):
    """A task you started (or named by id): its status, progress, events, and `wait()`."""

    def __init__(self, client: Client, task_id: str, accepted: TaskAccepted | None = None) -> None:
        super().__init__(task_id, accepted)
        self.client = client

    def status(self) -> TaskStatus:
        return self.client.get_task(self.task_id)

    def progress(self) -> TaskProgress:
        return self.client.get_progress(self.task_id)

    def cancel(self) -> CancelAccepted:
        return self.client.cancel(self.task_id)

    def events(self, timeout: float | None = None) -> Generator[TaskEvent, None, None]:
        """Progress as it happens, then one event with the final status (`event.final`)."""
        return self.client.events(self.task_id, timeout=timeout)

    def wait(self, timeout: float | None = None) -> TaskStatus:
        """The final status (`.status`, `.result`, `.error`); `WaitTimeout` when it takes longer."""
        with contextlib.closing(self.client.events(self.task_id, timeout=timeout)) as events:
            for event in events:
                if event.final is not None:
                    return event.final
        raise self._not_finished()


class AsyncTaskHandle(_Handle):
    """`TaskHandle` for `AsyncClient`: the same methods, as coroutines and async iterators."""

    def __init__(self, client: AsyncClient, task_id: str, accepted: TaskAccepted | None = None) -> None:
        super().__init__(task_id, accepted)
        self.client = client

    async def status(self) -> TaskStatus:
        return await self.client.get_task(self.task_id)

    async def progress(self) -> TaskProgress:
        return await self.client.get_progress(self.task_id)

    async def cancel(self) -> CancelAccepted:
        return await self.client.cancel(self.task_id)

    def events(self, timeout: float | None = None) -> AsyncGenerator[TaskEvent, None]:
        return self.client.events(self.task_id, timeout=timeout)

    # `timeout=` as on Client: API.md asks for the same methods; asyncio.timeout() works too.
    async def wait(self, timeout: float | None = None) -> TaskStatus:  # noqa: ASYNC109
        async with contextlib.aclosing(self.client.events(self.task_id, timeout=timeout)) as events:
            async for event in events:
                if event.final is not None:
                    return event.final
        raise self._not_finished()
