"""The endpoints of tasks and scraping: submissions, status, listing, cancel and replay."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Unpack

from smartapp._bind import endpoint, paged, submission
from smartapp._call import (
    Call,
    Pages,
    ScrapeOptions,
    TaskOptions,
    accepted,
    model,
    present,
    seg,
    submit,
)
from smartapp._models import (
    BulkReplayAccepted,
    CancelAccepted,
    ReplayAccepted,
    TaskAccepted,
    TaskList,
    TaskProgress,
    TaskStatus,
    TaskType,
)


def _list(
    status: str | None,
    limit: int | None,
    task_type: str | None,
    since: datetime | str | None,
    until: datetime | str | None,
    cursor: str | None,
) -> Call[TaskList]:
    params = present(status=status, limit=limit, task_type=task_type, since=since, until=until, cursor=cursor)
    return Call("GET", "/tasks/", model(TaskList), params=params)


class TasksAPI:
    @submission
    def submit_task(
        self, task_type: str, data: dict[str, Any] | None = None, **options: Unpack[TaskOptions]
    ) -> Call[TaskAccepted]:
        """`POST /background-task/`: start a task of a registered type; returns its handle.

        Options (keyword arguments): `countdown`, `priority`, `callback_url`, `idempotency_key`;
        `retry` (attempts, backoff), `queue_timeout_seconds` (not started by then: EXPIRED) and
        `run_timeout_seconds` (FAILURE, TimeLimitExceeded): None takes the task type's default.
        """
        return submit("/background-task/", {"task_type": task_type, "data": data or {}}, options)

    @submission
    def submit_long_running(
        self,
        steps: int = 10,
        step_seconds: float = 1.0,
        data: dict[str, Any] | None = None,
        **options: Unpack[TaskOptions],
    ) -> Call[TaskAccepted]:
        """`POST /long-running-task/`: `steps` steps of `step_seconds` each, with progress;
        the options of `submit_task`."""
        fields = {"steps": steps, "step_seconds": step_seconds, "data": data or {}}
        return submit("/long-running-task/", fields, options)

    @submission
    def scrape(self, url: str, **options: Unpack[ScrapeOptions]) -> Call[TaskAccepted]:
        """`POST /background-scraping/`: the result holds `markdown` and `summary` or `extraction`.

        Options (keyword arguments): `openai_key`, `model`, `prompt`, `schema` (extract into it),
        `max_age` (seconds a cached page may be old); `include_selectors` / `exclude_selectors`:
        CSS selectors that keep / drop parts of the page before extraction; `headers`: request
        headers for the page (never cached); and `retry`, `queue_timeout_seconds`,
        `run_timeout_seconds`, `idempotency_key` as on `submit_task`.
        """
        return submit("/background-scraping/", {"url": url}, options)

    @endpoint
    def get_task(self, task_id: str) -> Call[TaskStatus]:
        """`GET /task-status/{id}`; `NotFound` for an unknown id or another user's task."""
        return Call("GET", f"/task-status/{seg(task_id)}", model(TaskStatus))

    @endpoint
    def get_progress(self, task_id: str) -> Call[TaskProgress]:
        """`GET /task-progress/{id}`: steps done of how many, and the last step's message."""
        return Call("GET", f"/task-progress/{seg(task_id)}", model(TaskProgress))

    @endpoint
    def cancel(self, task_id: str) -> Call[CancelAccepted]:
        """`POST /task-cancel/{id}`: a queued task never starts, a running one stops (REVOKED)."""
        return Call("POST", f"/task-cancel/{seg(task_id)}", model(CancelAccepted))

    @endpoint
    def retry_task(
        self, task_id: str, openai_key: str | None = None, headers: dict[str, str] | None = None
    ) -> Call[ReplayAccepted]:
        """`POST /task-retry/{id}`: run a failed, revoked or expired task again as a new task (a
        scrape that used your own key or request headers needs them again: they are never kept)."""
        body: dict[str, Any] = {"openai_key": openai_key} if openai_key else {}
        if headers:
            body["headers"] = headers
        return Call("POST", f"/task-retry/{seg(task_id)}", accepted(ReplayAccepted), body)

    @endpoint
    def retry_tasks(
        self, status: str = "FAILURE", task_type: str | None = None, since: datetime | str | None = None
    ) -> Call[BulkReplayAccepted]:
        """`POST /tasks/retry`: replay up to 1,000 of your tasks in `status`."""
        body = {"status": status, **present(task_type=task_type, since=since)}
        return Call("POST", "/tasks/retry", model(BulkReplayAccepted), body)

    @endpoint
    def list_tasks(
        self,
        status: str | None = None,
        limit: int = 50,
        *,
        task_type: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        cursor: str | None = None,
    ) -> Call[list[TaskStatus]]:
        """Your tasks, newest first: one page (`list_tasks_page` has its `next_cursor`)."""
        return _list(status, limit, task_type, since, until, cursor).then(lambda page: page.tasks)

    @endpoint
    def list_tasks_page(
        self,
        status: str | None = None,
        limit: int | None = None,
        *,
        task_type: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        cursor: str | None = None,
    ) -> Call[TaskList]:
        """`GET /tasks/`: one page of your tasks created in [`since`, `until`], newest first."""
        return _list(status, limit, task_type, since, until, cursor)

    @paged
    def iter_tasks(
        self,
        status: str | None = None,
        *,
        task_type: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        page_size: int | None = None,
    ) -> Pages[TaskStatus]:
        """Every task that matches, newest first, following `next_cursor` page after page."""
        return Pages(
            lambda cursor: _list(status, page_size, task_type, since, until, cursor).then(
                lambda page: (page.tasks, page.next_cursor)
            )
        )

    @endpoint
    def task_types(self) -> Call[list[TaskType]]:
        """`GET /task-types/`: the registered types, their descriptions and default attempts."""
        return Call(
            "GET", "/task-types/", lambda r: [TaskType.model_validate(t) for t in r.json()["task_types"]]
        )
