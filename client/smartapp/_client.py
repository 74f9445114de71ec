"""`Client` and `AsyncClient`: one method per endpoint, retries, task handles that follow events."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Generator
from datetime import datetime
from typing import Any, TypeVar

import httpx
from httpx_sse import SSEError, aconnect_sse, connect_sse

from smartapp import _endpoints as ep
from smartapp._errors import (
    APIError,
    Forbidden,
    NotFound,
    TransportError,
    Unauthorized,
    WaitTimeout,
    error_from_response,
)
from smartapp._models import (
    TERMINAL,
    BatchAccepted,
    BatchStatus,
    BulkReplayAccepted,
    CacheBatchResult,
    CacheEntry,
    CacheItem,
    CacheListing,
    CancelAccepted,
    Device,
    InboxItem,
    InboxPage,
    NotificationAccepted,
    NotificationCancelled,
    NotificationStatus,
    Preferences,
    ReadResult,
    ReplayAccepted,
    Schedule,
    TaskAccepted,
    TaskEvent,
    TaskList,
    TaskProgress,
    TaskRetry,
    TaskStatus,
    TaskType,
)
from smartapp._stream import (
    RetryPolicy,
    StreamPolicy,
    StreamUnavailable,
    deadline_of,
    final_event,
    inbox_item,
    progress_event,
    read_timeout,
    remaining,
    task_event,
)

T = TypeVar("T")
API_PREFIX = "/smart_application/tasks"
DEFAULT_URL = "http://localhost:8000"
# Refusals a reconnect or a poll cannot fix: raised to the caller at once.
_FINAL_ERRORS = (NotFound, Unauthorized, Forbidden)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("smartapp")
    except Exception:  # not installed (a source checkout on sys.path)
        return "0"


class _Base:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        stream: StreamPolicy | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        base = base_url.rstrip("/")
        if not base.endswith(API_PREFIX):
            base += API_PREFIX
        self.base_url = base
        self.retry = RetryPolicy(max_retries=max_retries, max_wait=max_retry_wait)
        self.stream = stream or StreamPolicy()
        self._headers = {"User-Agent": f"smartapp-python/{_version()}", **(headers or {})}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout

    def _check_stream(self, response: httpx.Response) -> None:
        """Raise for a stream that answered with an error: final ones as such, others as unavailable."""
        if response.status_code == 200:
            return
        error = error_from_response(response)
        if isinstance(error, _FINAL_ERRORS):
            raise error
        raise StreamUnavailable(str(error))


# --- sync --------------------------------------------------------------------------------------


class TaskHandle:
    """A task you started (or named by id): its status, progress, events, and `wait()`."""

    def __init__(self, client: Client, task_id: str, accepted: TaskAccepted | None = None) -> None:
        self.client = client
        self.task_id = task_id
        self.accepted = accepted
        self.request_id = accepted.request_id if accepted else None

    def __repr__(self) -> str:
        return f"TaskHandle({self.task_id!r})"

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
        with contextlib.closing(self.events(timeout=timeout)) as events:
            for event in events:
                if event.final is not None:
                    return event.final
        raise WaitTimeout(f"task {self.task_id} did not finish")  # pragma: no cover: events() raises first


class Client:
    """The platform's API over httpx, blocking. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        stream: StreamPolicy | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._base = _Base(
            base_url,
            token,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_wait=max_retry_wait,
            stream=stream,
            headers=headers,
        )
        self._http = httpx.Client(
            base_url=self._base.base_url,
            headers=self._base._headers,
            timeout=self._base._timeout,
            transport=transport,
        )

    @property
    def base_url(self) -> str:
        return self._base.base_url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(self, call: ep.Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    call.method, call.path, json=call.json, params=call.params or None, headers=call.headers()
                )
            except httpx.TransportError as exc:
                wait = self._base.retry.wait_for_transport(exc, call.safe_to_repeat, attempt)
                if wait is None:
                    raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            else:
                if response.is_success:
                    return call.parse(response)
                wait = self._base.retry.wait_for_status(response, attempt)
                if wait is None:
                    raise error_from_response(response)
            time.sleep(wait)
            attempt += 1

    # tasks

    def submit_task(
        self,
        task_type: str,
        data: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        priority: int | None = None,
        callback_url: str | None = None,
        retry: TaskRetry | dict[str, Any] | None = None,
        queue_timeout_seconds: float | None = None,
        run_timeout_seconds: float | None = None,
        idempotency_key: str | None = None,
    ) -> TaskHandle:
        """`POST /background-task/`: start a task of a registered type."""
        accepted = self._send(
            ep.submit_task(
                task_type,
                data,
                ep.SubmitOptions(
                    retry, queue_timeout_seconds, run_timeout_seconds, countdown, priority, callback_url
                ),
                idempotency_key,
            )
        )
        return TaskHandle(self, accepted.task_id, accepted)

    def submit_long_running(
        self,
        steps: int = 10,
        step_seconds: float = 1.0,
        data: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        priority: int | None = None,
        callback_url: str | None = None,
        retry: TaskRetry | dict[str, Any] | None = None,
        queue_timeout_seconds: float | None = None,
        run_timeout_seconds: float | None = None,
        idempotency_key: str | None = None,
    ) -> TaskHandle:
        """`POST /long-running-task/`: `steps` steps of `step_seconds` each, with progress."""
        accepted = self._send(
            ep.submit_long_running(
                steps,
                step_seconds,
                data,
                ep.SubmitOptions(
                    retry, queue_timeout_seconds, run_timeout_seconds, countdown, priority, callback_url
                ),
                idempotency_key,
            )
        )
        return TaskHandle(self, accepted.task_id, accepted)

    def task(self, task_id: str) -> TaskHandle:
        """A handle on an existing task (no request is made)."""
        return TaskHandle(self, task_id)

    def get_task(self, task_id: str) -> TaskStatus:
        """`GET /task-status/{id}`; `NotFound` for an unknown id or another user's task."""
        return self._send(ep.get_task(task_id))

    def get_progress(self, task_id: str) -> TaskProgress:
        return self._send(ep.get_progress(task_id))

    def cancel(self, task_id: str) -> CancelAccepted:
        return self._send(ep.cancel(task_id))

    def retry_task(self, task_id: str, openai_key: str | None = None) -> ReplayAccepted:
        """`POST /task-retry/{id}`: run a failed, revoked or expired task again as a new task."""
        return self._send(ep.retry_task(task_id, openai_key))

    def retry_tasks(
        self, status: str = "FAILURE", task_type: str | None = None, since: datetime | str | None = None
    ) -> BulkReplayAccepted:
        """`POST /tasks/retry`: replay up to 1,000 of your tasks in `status`."""
        return self._send(ep.retry_tasks(status, task_type, since))

    def list_tasks(
        self,
        status: str | None = None,
        limit: int = 50,
        *,
        task_type: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        cursor: str | None = None,
    ) -> list[TaskStatus]:
        """Your tasks, newest first: one page (`list_tasks_page` has its `next_cursor`)."""
        return self.list_tasks_page(
            status, limit, task_type=task_type, since=since, until=until, cursor=cursor
        ).tasks

    def list_tasks_page(
        self,
        status: str | None = None,
        limit: int | None = None,
        *,
        task_type: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        cursor: str | None = None,
    ) -> TaskList:
        """`GET /tasks/`: one page of your tasks, created in [`since`, `until`], newest first."""
        return self._send(ep.list_tasks(status, limit, task_type, since, until, cursor))

    def iter_tasks(
        self,
        status: str | None = None,
        *,
        task_type: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        page_size: int | None = None,
    ) -> Generator[TaskStatus, None, None]:
        """Every task that matches, newest first, following `next_cursor` page after page."""
        cursor: str | None = None
        while True:
            page = self.list_tasks_page(
                status, page_size, task_type=task_type, since=since, until=until, cursor=cursor
            )
            yield from page.tasks
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def task_types(self) -> list[TaskType]:
        return self._send(ep.task_types())

    def events(self, task_id: str, *, timeout: float | None = None) -> Generator[TaskEvent, None, None]:
        """Follow `GET /task-events/{id}`: reconnect when the connection drops, poll when streaming fails."""
        deadline = deadline_of(timeout)
        policy = self._base.stream
        last: TaskEvent | None = None
        failures = 0
        while True:
            if failures <= policy.reconnects:
                try:
                    got_any = False
                    with contextlib.closing(self._stream_events(task_id, deadline)) as stream:
                        for event in stream:
                            got_any = True
                            failures = 0
                            if event != last:
                                last = event
                                yield event
                            if event.final is not None:
                                return
                            _check_deadline(task_id, deadline)  # a busy stream never times out by itself
                    failures += 0 if got_any else 1  # a stream ended by the server: reconnect
                except _FINAL_ERRORS:
                    raise
                except StreamUnavailable:
                    failures = policy.reconnects + 1  # 429/503: polling instead, at once
                except (httpx.TransportError, SSEError, APIError):
                    failures += 1
                    _check_deadline(task_id, deadline)
                    time.sleep(min(0.2 * failures, 1.0))
                _check_deadline(task_id, deadline)
                continue
            progress = self.get_progress(task_id)
            if progress.status in TERMINAL:
                yield final_event(self.get_task(task_id))
                return
            event = progress_event(progress)
            if event != last:
                last = event
                yield event
            left = remaining(deadline)
            _check_deadline(task_id, deadline)
            time.sleep(policy.poll_interval if left is None else min(policy.poll_interval, max(left, 0)))

    def _stream_events(self, task_id: str, deadline: float | None) -> Generator[TaskEvent, None, None]:
        with connect_sse(
            self._http, "GET", ep.events_path(task_id), timeout=read_timeout(deadline, self._base.stream)
        ) as source:
            if source.response.status_code != 200:
                source.response.read()
            self._base._check_stream(source.response)
            for sse in source.iter_sse():
                event = task_event(task_id, sse)
                if event is not None:
                    yield event

    # scraping

    def scrape(
        self,
        url: str,
        *,
        openai_key: str | None = None,
        model: str | None = None,
        prompt: str | None = None,
        schema: dict[str, Any] | None = None,
        max_age: int | None = None,
        idempotency_key: str | None = None,
        include_selectors: list[str] | None = None,
        exclude_selectors: list[str] | None = None,
        headers: dict[str, str] | None = None,
        retry: TaskRetry | dict[str, Any] | None = None,
        queue_timeout_seconds: float | None = None,
        run_timeout_seconds: float | None = None,
    ) -> TaskHandle:
        """`POST /background-scraping/`: the result holds `markdown` and `summary` or `extraction`.

        `include_selectors` / `exclude_selectors`: CSS selectors that keep / drop parts of the
        page before extraction; `headers`: request headers for the page (never cached).
        """
        accepted = self._send(
            ep.scrape(
                url,
                openai_key=openai_key,
                model=model,
                prompt=prompt,
                schema=schema,
                max_age=max_age,
                idempotency_key=idempotency_key,
                include_selectors=include_selectors,
                exclude_selectors=exclude_selectors,
                headers=headers,
                options=ep.SubmitOptions(retry, queue_timeout_seconds, run_timeout_seconds),
            )
        )
        return TaskHandle(self, accepted.task_id, accepted)

    # notifications

    def register_device(
        self,
        channel: str,
        *,
        subscription: dict[str, Any] | None = None,
        url: str | None = None,
        name: str | None = None,
    ) -> Device:
        return self._send(ep.register_device(channel, subscription=subscription, url=url, name=name))

    def list_devices(self) -> list[Device]:
        return self._send(ep.list_devices()).devices

    def delete_device(self, device_id: str) -> None:
        self._send(ep.delete_device(device_id))

    def vapid_public_key(self) -> str:
        return self._send(ep.vapid_public_key())

    def send_notification(
        self,
        user_id: str,
        title: str,
        message: str = "",
        data: dict[str, Any] | None = None,
        *,
        ttl: int | None = None,
        urgency: str | None = None,
        send_at: str | datetime | None = None,
        idempotency_key: str | None = None,
    ) -> NotificationAccepted:
        body = ep.notification_body(user_id, title, message, data, ttl, urgency, send_at)
        return self._send(ep.send_notification(body, idempotency_key))

    def batch_notifications(
        self, notifications: list[dict[str, Any]], *, idempotency_key: str | None = None
    ) -> BatchAccepted:
        return self._send(ep.batch_notifications(notifications, idempotency_key))

    def notification_status(self, notification_id: str) -> NotificationStatus:
        return self._send(ep.notification_status(notification_id))

    def batch_status(self, batch_id: str) -> BatchStatus:
        return self._send(ep.batch_status(batch_id))

    def inbox(self, limit: int = 50, *, before: int | None = None, unread: bool = False) -> InboxPage:
        return self._send(ep.inbox(limit, before, unread))

    def mark_read(self, notification_id: str) -> ReadResult:
        return self._send(ep.mark_read(notification_id))

    def mark_all_read(self) -> ReadResult:
        return self._send(ep.mark_all_read())

    def follow_inbox(self, *, since: int | None = None) -> Generator[InboxItem, None, None]:
        """`GET /inbox/stream`, forever: new notifications; reconnects resume after the last seen."""
        last = since
        failures = 0
        while True:
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            try:
                with connect_sse(
                    self._http,
                    "GET",
                    ep.INBOX_STREAM_PATH,
                    headers=headers,
                    timeout=read_timeout(None, self._base.stream),
                ) as source:
                    if source.response.status_code != 200:
                        source.response.read()
                    self._base._check_stream(source.response)
                    for sse in source.iter_sse():
                        item = inbox_item(sse)
                        if item is not None:
                            failures = 0
                            last = item.seq
                            yield item
            except _FINAL_ERRORS:
                raise
            except (httpx.TransportError, SSEError, APIError, StreamUnavailable) as exc:
                failures += 1
                if failures > self._base.stream.reconnects + 2:
                    raise TransportError(f"the inbox stream keeps failing: {exc}") from exc
                time.sleep(min(0.5 * failures, 5.0))

    # cache

    def cache_get(self, key: str) -> CacheEntry:
        """`GET /cache/{key}`: the value, its seconds left, and `.etag` for a conditional put."""
        return self._send(ep.cache_get(key))

    def cache_put(
        self,
        key: str,
        value: Any,
        *,
        ttl: int | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> CacheEntry:
        """`PUT /cache/{key}`; `if_match=entry.etag` writes only over that version and
        `if_none_match="*"` only creates: `PreconditionFailed` (412) otherwise."""
        return self._send(ep.cache_put(key, value, ttl, if_match, if_none_match))

    def cache_delete(self, key: str) -> None:
        self._send(ep.cache_delete(key))

    def cache_list(
        self, prefix: str = "", *, cursor: str | None = None, limit: int | None = None
    ) -> CacheListing:
        """`GET /cache/`: one page of your keys in key order; `next_cursor` for the next."""
        return self._send(ep.cache_list(prefix, cursor, limit))

    def iter_cache(self, prefix: str = "", *, limit: int | None = None) -> Generator[CacheItem, None, None]:
        """Every key under `prefix`, following `next_cursor` page after page."""
        cursor: str | None = None
        while True:
            page = self.cache_list(prefix, cursor=cursor, limit=limit)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cache_batch(
        self,
        get: list[str] | None = None,
        set: dict[str, Any] | None = None,
        delete: list[str] | None = None,
        *,
        ttl: int | None = None,
    ) -> CacheBatchResult:
        """`POST /cache-batch/`: read, store (each with `ttl`) and delete keys in one atomic step."""
        return self._send(ep.cache_batch(get, set, delete, ttl))

    # schedules

    def create_schedule(
        self,
        name: str,
        target: str,
        body: dict[str, Any] | None = None,
        *,
        cron: str | None = None,
        every_seconds: int | None = None,
        timezone: str | None = None,
        paused: bool = False,
    ) -> Schedule:
        """`POST /schedules/`: run `target` (an endpoint, e.g. `background-task`) with `body`,
        on `cron` (in `timezone`) or every `every_seconds`."""
        return self._send(
            ep.create_schedule(
                name, target, body, cron=cron, every_seconds=every_seconds, timezone=timezone, paused=paused
            )
        )

    def list_schedules(self) -> list[Schedule]:
        return self._send(ep.list_schedules()).schedules

    def get_schedule(self, schedule_id: str) -> Schedule:
        return self._send(ep.get_schedule(schedule_id))

    def update_schedule(self, schedule_id: str, **changes: Any) -> Schedule:
        """`PATCH /schedules/{id}`: e.g. `paused=True`, `cron=...`, `name=...`."""
        return self._send(ep.update_schedule(schedule_id, changes))

    def delete_schedule(self, schedule_id: str) -> None:
        self._send(ep.delete_schedule(schedule_id))

    # notification cancel and preferences

    def cancel_notification(self, notification_id: str) -> NotificationCancelled:
        """`POST /notification-cancel/{id}`: stop one not yet sent; `Conflict` when all went out."""
        return self._send(ep.cancel_notification(notification_id))

    def get_preferences(self) -> Preferences:
        return self._send(ep.get_preferences())

    def set_preferences(self, preferences: Preferences | dict[str, Any]) -> Preferences:
        """`PUT /notification-preferences`: channels on or off, quiet hours (None: none)."""
        return self._send(ep.set_preferences(preferences))


# --- async -------------------------------------------------------------------------------------


class AsyncTaskHandle:
    """`TaskHandle` for `AsyncClient`: the same methods, as coroutines and async iterators."""

    def __init__(self, client: AsyncClient, task_id: str, accepted: TaskAccepted | None = None) -> None:
        self.client = client
        self.task_id = task_id
        self.accepted = accepted
        self.request_id = accepted.request_id if accepted else None

    def __repr__(self) -> str:
        return f"AsyncTaskHandle({self.task_id!r})"

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
        async with contextlib.aclosing(self.events(timeout=timeout)) as events:
            async for event in events:
                if event.final is not None:
                    return event.final
        raise WaitTimeout(f"task {self.task_id} did not finish")  # pragma: no cover


class AsyncClient:
    """`Client` for asyncio: the same methods as coroutines. Use `async with`, or `aclose()`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        stream: StreamPolicy | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base = _Base(
            base_url,
            token,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_wait=max_retry_wait,
            stream=stream,
            headers=headers,
        )
        self._http = httpx.AsyncClient(
            base_url=self._base.base_url,
            headers=self._base._headers,
            timeout=self._base._timeout,
            transport=transport,
        )

    @property
    def base_url(self) -> str:
        return self._base.base_url

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def _send(self, call: ep.Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method, call.path, json=call.json, params=call.params or None, headers=call.headers()
                )
            except httpx.TransportError as exc:
                wait = self._base.retry.wait_for_transport(exc, call.safe_to_repeat, attempt)
                if wait is None:
                    raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            else:
                if response.is_success:
                    return call.parse(response)
                wait = self._base.retry.wait_for_status(response, attempt)
                if wait is None:
                    raise error_from_response(response)
            await asyncio.sleep(wait)
            attempt += 1

    # tasks

    async def submit_task(
        self,
        task_type: str,
        data: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        priority: int | None = None,
        callback_url: str | None = None,
        retry: TaskRetry | dict[str, Any] | None = None,
        queue_timeout_seconds: float | None = None,
        run_timeout_seconds: float | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncTaskHandle:
        accepted = await self._send(
            ep.submit_task(
                task_type,
                data,
                ep.SubmitOptions(
                    retry, queue_timeout_seconds, run_timeout_seconds, countdown, priority, callback_url
                ),
                idempotency_key,
            )
        )
        return AsyncTaskHandle(self, accepted.task_id, accepted)

    async def submit_long_running(
        self,
        steps: int = 10,
        step_seconds: float = 1.0,
        data: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        priority: int | None = None,
        callback_url: str | None = None,
        retry: TaskRetry | dict[str, Any] | None = None,
        queue_timeout_seconds: float | None = None,
        run_timeout_seconds: float | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncTaskHandle:
        accepted = await self._send(
            ep.submit_long_running(
                steps,
                step_seconds,
                data,
                ep.SubmitOptions(
                    retry, queue_timeout_seconds, run_timeout_seconds, countdown, priority, callback_url
                ),
                idempotency_key,
            )
        )
        return AsyncTaskHandle(self, accepted.task_id, accepted)

    def task(self, task_id: str) -> AsyncTaskHandle:
        return AsyncTaskHandle(self, task_id)

    async def get_task(self, task_id: str) -> TaskStatus:
        return await self._send(ep.get_task(task_id))

    async def get_progress(self, task_id: str) -> TaskProgress:
        return await self._send(ep.get_progress(task_id))

    async def cancel(self, task_id: str) -> CancelAccepted:
        return await self._send(ep.cancel(task_id))

    async def retry_task(self, task_id: str, openai_key: str | None = None) -> ReplayAccepted:
        return await self._send(ep.retry_task(task_id, openai_key))

    async def retry_tasks(
        self, status: str = "FAILURE", task_type: str | None = None, since: datetime | str | None = None
    ) -> BulkReplayAccepted:
        return await self._send(ep.retry_tasks(status, task_type, since))

    async def list_tasks(
        self,
        status: str | None = None,
        limit: int = 50,
        *,
        task_type: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        cursor: str | None = None,
    ) -> list[TaskStatus]:
        page = await self.list_tasks_page(
            status, limit, task_type=task_type, since=since, until=until, cursor=cursor
        )
        return page.tasks

    async def list_tasks_page(
        self,
        status: str | None = None,
        limit: int | None = None,
        *,
        task_type: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        cursor: str | None = None,
    ) -> TaskList:
        return await self._send(ep.list_tasks(status, limit, task_type, since, until, cursor))

    async def iter_tasks(
        self,
        status: str | None = None,
        *,
        task_type: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        page_size: int | None = None,
    ) -> AsyncGenerator[TaskStatus, None]:
        cursor: str | None = None
        while True:
            page = await self.list_tasks_page(
                status, page_size, task_type=task_type, since=since, until=until, cursor=cursor
            )
            for task in page.tasks:
                yield task
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def task_types(self) -> list[TaskType]:
        return await self._send(ep.task_types())

    async def events(
        self,
        task_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> AsyncGenerator[TaskEvent, None]:
        deadline = deadline_of(timeout)
        policy = self._base.stream
        last: TaskEvent | None = None
        failures = 0
        while True:
            if failures <= policy.reconnects:
                try:
                    got_any = False
                    async with contextlib.aclosing(self._stream_events(task_id, deadline)) as stream:
                        async for event in stream:
                            got_any = True
                            failures = 0
                            if event != last:
                                last = event
                                yield event
                            if event.final is not None:
                                return
                            _check_deadline(task_id, deadline)  # a busy stream never times out by itself
                    failures += 0 if got_any else 1
                except _FINAL_ERRORS:
                    raise
                except StreamUnavailable:
                    failures = policy.reconnects + 1
                except (httpx.TransportError, SSEError, APIError):
                    failures += 1
                    _check_deadline(task_id, deadline)
                    await asyncio.sleep(min(0.2 * failures, 1.0))
                _check_deadline(task_id, deadline)
                continue
            progress = await self.get_progress(task_id)
            if progress.status in TERMINAL:
                yield final_event(await self.get_task(task_id))
                return
            event = progress_event(progress)
            if event != last:
                last = event
                yield event
            left = remaining(deadline)
            _check_deadline(task_id, deadline)
            await asyncio.sleep(
                policy.poll_interval if left is None else min(policy.poll_interval, max(left, 0))
            )

    async def _stream_events(self, task_id: str, deadline: float | None) -> AsyncGenerator[TaskEvent, None]:
        async with aconnect_sse(
            self._http, "GET", ep.events_path(task_id), timeout=read_timeout(deadline, self._base.stream)
        ) as source:
            if source.response.status_code != 200:
                await source.response.aread()
            self._base._check_stream(source.response)
            async for sse in source.aiter_sse():
                event = task_event(task_id, sse)
                if event is not None:
                    yield event

    # scraping

    async def scrape(
        self,
        url: str,
        *,
        openai_key: str | None = None,
        model: str | None = None,
        prompt: str | None = None,
        schema: dict[str, Any] | None = None,
        max_age: int | None = None,
        idempotency_key: str | None = None,
        include_selectors: list[str] | None = None,
        exclude_selectors: list[str] | None = None,
        headers: dict[str, str] | None = None,
        retry: TaskRetry | dict[str, Any] | None = None,
        queue_timeout_seconds: float | None = None,
        run_timeout_seconds: float | None = None,
    ) -> AsyncTaskHandle:
        accepted = await self._send(
            ep.scrape(
                url,
                openai_key=openai_key,
                model=model,
                prompt=prompt,
                schema=schema,
                max_age=max_age,
                idempotency_key=idempotency_key,
                include_selectors=include_selectors,
                exclude_selectors=exclude_selectors,
                headers=headers,
                options=ep.SubmitOptions(retry, queue_timeout_seconds, run_timeout_seconds),
            )
        )
        return AsyncTaskHandle(self, accepted.task_id, accepted)

    # notifications

    async def register_device(
        self,
        channel: str,
        *,
        subscription: dict[str, Any] | None = None,
        url: str | None = None,
        name: str | None = None,
    ) -> Device:
        return await self._send(ep.register_device(channel, subscription=subscription, url=url, name=name))

    async def list_devices(self) -> list[Device]:
        return (await self._send(ep.list_devices())).devices

    async def delete_device(self, device_id: str) -> None:
        await self._send(ep.delete_device(device_id))

    async def vapid_public_key(self) -> str:
        return await self._send(ep.vapid_public_key())

    async def send_notification(
        self,
        user_id: str,
        title: str,
        message: str = "",
        data: dict[str, Any] | None = None,
        *,
        ttl: int | None = None,
        urgency: str | None = None,
        send_at: str | datetime | None = None,
        idempotency_key: str | None = None,
    ) -> NotificationAccepted:
        body = ep.notification_body(user_id, title, message, data, ttl, urgency, send_at)
        return await self._send(ep.send_notification(body, idempotency_key))

    async def batch_notifications(
        self, notifications: list[dict[str, Any]], *, idempotency_key: str | None = None
    ) -> BatchAccepted:
        return await self._send(ep.batch_notifications(notifications, idempotency_key))

    async def notification_status(self, notification_id: str) -> NotificationStatus:
        return await self._send(ep.notification_status(notification_id))

    async def batch_status(self, batch_id: str) -> BatchStatus:
        return await self._send(ep.batch_status(batch_id))

    async def inbox(self, limit: int = 50, *, before: int | None = None, unread: bool = False) -> InboxPage:
        return await self._send(ep.inbox(limit, before, unread))

    async def mark_read(self, notification_id: str) -> ReadResult:
        return await self._send(ep.mark_read(notification_id))

    async def mark_all_read(self) -> ReadResult:
        return await self._send(ep.mark_all_read())

    async def follow_inbox(self, *, since: int | None = None) -> AsyncGenerator[InboxItem, None]:
        last = since
        failures = 0
        while True:
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            try:
                async with aconnect_sse(
                    self._http,
                    "GET",
                    ep.INBOX_STREAM_PATH,
                    headers=headers,
                    timeout=read_timeout(None, self._base.stream),
                ) as source:
                    if source.response.status_code != 200:
                        await source.response.aread()
                    self._base._check_stream(source.response)
                    async for sse in source.aiter_sse():
                        item = inbox_item(sse)
                        if item is not None:
                            failures = 0
                            last = item.seq
                            yield item
            except _FINAL_ERRORS:
                raise
            except (httpx.TransportError, SSEError, APIError, StreamUnavailable) as exc:
                failures += 1
                if failures > self._base.stream.reconnects + 2:
                    raise TransportError(f"the inbox stream keeps failing: {exc}") from exc
                await asyncio.sleep(min(0.5 * failures, 5.0))

    # cache

    async def cache_get(self, key: str) -> CacheEntry:
        return await self._send(ep.cache_get(key))

    async def cache_put(
        self,
        key: str,
        value: Any,
        *,
        ttl: int | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> CacheEntry:
        return await self._send(ep.cache_put(key, value, ttl, if_match, if_none_match))

    async def cache_delete(self, key: str) -> None:
        await self._send(ep.cache_delete(key))

    async def cache_list(
        self, prefix: str = "", *, cursor: str | None = None, limit: int | None = None
    ) -> CacheListing:
        return await self._send(ep.cache_list(prefix, cursor, limit))

    async def iter_cache(
        self, prefix: str = "", *, limit: int | None = None
    ) -> AsyncGenerator[CacheItem, None]:
        cursor: str | None = None
        while True:
            page = await self.cache_list(prefix, cursor=cursor, limit=limit)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cache_batch(
        self,
        get: list[str] | None = None,
        set: dict[str, Any] | None = None,
        delete: list[str] | None = None,
        *,
        ttl: int | None = None,
    ) -> CacheBatchResult:
        return await self._send(ep.cache_batch(get, set, delete, ttl))

    # schedules

    async def create_schedule(
        self,
        name: str,
        target: str,
        body: dict[str, Any] | None = None,
        *,
        cron: str | None = None,
        every_seconds: int | None = None,
        timezone: str | None = None,
        paused: bool = False,
    ) -> Schedule:
        return await self._send(
            ep.create_schedule(
                name, target, body, cron=cron, every_seconds=every_seconds, timezone=timezone, paused=paused
            )
        )

    async def list_schedules(self) -> list[Schedule]:
        return (await self._send(ep.list_schedules())).schedules

    async def get_schedule(self, schedule_id: str) -> Schedule:
        return await self._send(ep.get_schedule(schedule_id))

    async def update_schedule(self, schedule_id: str, **changes: Any) -> Schedule:
        return await self._send(ep.update_schedule(schedule_id, changes))

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._send(ep.delete_schedule(schedule_id))

    # notification cancel and preferences

    async def cancel_notification(self, notification_id: str) -> NotificationCancelled:
        return await self._send(ep.cancel_notification(notification_id))

    async def get_preferences(self) -> Preferences:
        return await self._send(ep.get_preferences())

    async def set_preferences(self, preferences: Preferences | dict[str, Any]) -> Preferences:
        return await self._send(ep.set_preferences(preferences))


def _check_deadline(task_id: str, deadline: float | None) -> None:
    left = remaining(deadline)
    if left is not None and left <= 0:
        raise WaitTimeout(f"task {task_id} did not finish in time")
