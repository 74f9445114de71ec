"""`task ...` and `scrape`: start work, follow it with a live progress bar, show its outcome."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import click
from click.shell_completion import CompletionItem
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from smartapp import _config
from smartapp._client import Client
from smartapp._errors import (
    SmartappError,
)
from smartapp._models import TaskStatus
from smartapp._tasks import TaskHandle
from smartapp.cli._common import (
    EXIT_FAILED,
    LONG_RUNNING,
    cli,
    emit,
    emit_model,
    err,
    json_option,
    out,
    parse_object,
    parse_time,
    reply,
    state,
    submission,
    submit_options,
)


class RateColumn(ProgressColumn):
    """Steps per second, from rich's own speed estimate."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        shown = "?" if speed is None else f"{speed:.1f}"  # "?" until two steps give a rate, as rich does
        return Text(f"{shown} steps/s", style="progress.data.speed")


def _bar() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=False,
    )


def follow(handle: TaskHandle, timeout: float | None) -> TaskStatus:
    """Wait for the task; on a terminal (and without --json) with a live bar fed by task-events."""
    if state.json or not out.is_terminal:
        return handle.wait(timeout=timeout)
    with _bar() as bar:
        row = bar.add_task(f"task {handle.task_id[:8]}", total=None)
        for event in handle.events(timeout=timeout):
            if event.final is not None:
                done = event.final.status == "SUCCESS"
                if done:
                    total = bar.tasks[0].total or 1
                    bar.update(row, total=total, completed=total, description="done")
                else:
                    bar.update(row, description=event.final.status.lower())
                bar.stop()
                return event.final
            description = event.message or event.status.lower()
            if event.total:
                bar.update(row, total=event.total, completed=event.current or 0, description=description)
            else:
                bar.update(row, description=description)
    raise AssertionError("unreachable: events() ends with a final status")  # pragma: no cover


def finish(status: TaskStatus, handle: TaskHandle, show: Callable[[TaskStatus], None] | None = None) -> None:
    """Print the outcome; exit 1 when the task did not succeed."""
    if state.json:
        emit_model(status)
    elif status.status == "SUCCESS":
        (show or _show_result)(status)
    else:
        _show_failure(status, handle)
    if status.status != "SUCCESS":
        raise SystemExit(EXIT_FAILED)


def _show_json(value: Any) -> None:
    text = json.dumps(value, indent=2, default=str)
    if out.is_terminal:
        out.print_json(text)
    else:  # as is: rich would wrap long lines at its width, inside JSON strings too
        click.echo(text)


def _show_result(status: TaskStatus) -> None:
    _show_json(status.result)


def _show_failure(status: TaskStatus, handle: TaskHandle) -> None:
    error = status.error
    what = f"{error.type}: {error.message}" if error else "no error recorded"
    rid = getattr(status, "request_id", None) or handle.request_id
    err.print(f"[red]Task {status.task_id} ended {status.status}[/red]: {what}", markup=True)
    if rid:
        err.print(f"request_id: {rid}")


def _started(handle: TaskHandle) -> None:
    if state.json:
        assert handle.accepted is not None
        emit({**handle.accepted.model_dump(mode="json"), "request_id": handle.request_id})
    else:
        click.echo(handle.task_id)


@cli.group()
def task() -> None:
    """Start, list, follow and cancel tasks."""


def _complete_task_type(ctx: click.Context, _: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """TYPE completes from the platform's own list (`GET /task-types/`), quietly."""
    root = ctx.find_root().params
    settings = _config.resolve(root.get("url"), root.get("token"))
    try:
        with Client(settings.url, settings.token, timeout=3.0, max_retries=0) as client:
            kinds = [(t.name, t.description) for t in client.task_types()]
    except (SmartappError, click.ClickException):
        kinds = []
    kinds.append((LONG_RUNNING, "steps with progress"))
    return [CompletionItem(name, help=help) for name, help in kinds if name.startswith(incomplete)]


@task.command("run")
@click.argument("task_type", metavar="TYPE", shell_complete=_complete_task_type)
@click.option("--data", "data_json", help='The task\'s data as JSON, e.g. \'{"input": "x"}\'.')
@click.option("--wait/--no-wait", default=False, help="Follow the task to its end.")
@click.option("--timeout", type=float, default=None, help="Seconds --wait gives up after (exit 1).")
@click.option("--priority", type=click.IntRange(0, 9), default=None)
@click.option("--countdown", type=float, default=None, help="Seconds before it may start.")
@submit_options
@json_option
def task_run(
    task_type: str,
    data_json: str | None,
    wait: bool,
    timeout: float | None,
    priority: int | None,
    countdown: float | None,
    max_attempts: int | None,
    queue_timeout: float | None,
    run_timeout: float | None,
) -> None:
    """Start a task of TYPE (see `smartapp task types`), or `long-running`.

    For `long-running`, --data takes `steps` and `step_seconds`; other keys become its data.
    """
    data = parse_object(data_json, "--data")
    client = state.client()
    options = submission(max_attempts, queue_timeout, run_timeout)
    if task_type == LONG_RUNNING:
        steps = data.pop("steps", 10)
        step_seconds = data.pop("step_seconds", 1.0)
        inner = data.pop("data", None)
        handle = client.submit_long_running(
            steps,
            step_seconds,
            inner if inner is not None else data,
            countdown=countdown,
            priority=priority,
            **options,
        )
    else:
        handle = client.submit_task(task_type, data, countdown=countdown, priority=priority, **options)
    if not wait:
        _started(handle)
        return
    finish(follow(handle, timeout), handle)


@task.command("watch")
@click.argument("task_id")
@click.option("--timeout", type=float, default=None)
@json_option
def task_watch(task_id: str, timeout: float | None) -> None:
    """Follow a task to its end with a progress bar."""
    handle = state.client().task(task_id)
    finish(follow(handle, timeout), handle)


@task.command("status")
@click.argument("task_id")
@json_option
def task_status(task_id: str) -> None:
    """A task's status (and its result or error)."""
    status = state.client().get_task(task_id)
    if state.json:
        emit_model(status)
        return
    table = Table(show_header=False, box=None)
    for name in ("task_id", "status", "task_type", "queue", "created_at", "started_at", "finished_at"):
        table.add_row(name, str(getattr(status, name) or "-"))
    if status.error:
        table.add_row("error", f"{status.error.type}: {status.error.message}")
    out.print(table)
    if status.status == "SUCCESS":
        _show_result(status)


@task.command("list")
@click.option(
    "--status",
    type=click.Choice(
        ["PENDING", "STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED", "EXPIRED"]
    ),
)
@click.option("--type", "task_type", default=None, help="Only tasks of this type.")
@click.option("--since", default=None, help="Created at or after (ISO 8601; no zone: local time).")
@click.option("--until", default=None, help="Created at or before (ISO 8601; no zone: local time).")
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=20,
    show_default=True,
    help="How many to show, across as many pages as it takes.",
)
@json_option
def task_list(
    status: str | None, task_type: str | None, since: str | None, until: str | None, limit: int
) -> None:
    """Your tasks, newest first."""
    found = state.client().iter_tasks(
        status,
        task_type=task_type,
        since=parse_time(since, "--since"),
        until=parse_time(until, "--until"),
        page_size=min(limit, 500),
    )
    tasks = list(itertools.islice(found, limit))
    if state.json:
        emit([t.model_dump(mode="json") for t in tasks])
        return
    table = Table("task_id", "type", "status", "attempts", "created_at")
    for t in tasks:
        table.add_row(t.task_id, t.task_type or "-", t.status, str(t.attempts), t.created_at or "-")
    out.print(table)


@task.command("cancel")
@click.argument("task_id")
@json_option
def task_cancel(task_id: str) -> None:
    """Cancel a task: a queued one never starts, a running one stops at its next step."""
    answer = state.client().cancel(task_id)
    reply(answer, f"{answer.task_id} {answer.status} (cancel requested)")


@task.command("retry")
@click.argument("task_id")
@click.option(
    "--openai-key",
    envvar="SMARTAPP_OPENAI_KEY",
    default=None,
    help="For a scrape that used your own key: the key again (it is never kept).",
)
@json_option
def task_retry(task_id: str, openai_key: str | None) -> None:
    """Run a failed, revoked or expired task again, as a new task."""
    answer = state.client().retry_task(task_id, openai_key)
    reply(answer, f"{answer.task_id} {answer.status} (retry of {answer.retry_of})")


@task.command("retry-all")
@click.option(
    "--status",
    type=click.Choice(["FAILURE", "REVOKED", "EXPIRED"]),
    default="FAILURE",
    show_default=True,
    help="Replay your tasks that ended so.",
)
@click.option("--type", "task_type", default=None, help="Only tasks of this type.")
@click.option("--since", default=None, help="Created at or after (ISO 8601; no zone: local time).")
@json_option
def task_retry_all(status: str, task_type: str | None, since: str | None) -> None:
    """Run again, as new tasks, up to 1,000 of your tasks that ended in --status."""
    answer = state.client().retry_tasks(status, task_type=task_type, since=parse_time(since, "--since"))
    reply(answer, f"{answer.count} started again" + "".join(f"\n{tid}" for tid in answer.task_ids))


@task.command("types")
@json_option
def task_types() -> None:
    """The registered task types."""
    types = state.client().task_types()
    if state.json:
        emit([t.model_dump(mode="json") for t in types])
        return
    table = Table("type", "description")
    for t in types:
        table.add_row(t.name, t.description)
    table.add_row(LONG_RUNNING, "steps of step_seconds each, with progress (its own endpoint)")
    out.print(table)


# --- scraping ----------------------------------------------------------------------------------


@cli.command()
@click.argument("url")
@click.option("--model", default=None, help="The chat model (server default: gpt-4o).")
@click.option("--prompt", default=None, help="What to extract or summarise.")
@click.option(
    "--schema", "schema_json", default=None, help="A JSON Schema: the result's extraction conforms."
)
@click.option("--max-age", type=int, default=None, help="Seconds a cached fetch may be reused.")
@click.option(
    "--openai-key",
    envvar="SMARTAPP_OPENAI_KEY",
    default=None,
    help="Your OpenAI key (or SMARTAPP_OPENAI_KEY); omit when the server has its own.",
)
@click.option("--wait/--no-wait", default=False, help="Follow it and print the markdown or extraction.")
@click.option("--timeout", type=float, default=None)
@submit_options
@json_option
def scrape(
    url: str,
    model: str | None,
    prompt: str | None,
    schema_json: str | None,
    max_age: int | None,
    openai_key: str | None,
    wait: bool,
    timeout: float | None,
    max_attempts: int | None,
    queue_timeout: float | None,
    run_timeout: float | None,
) -> None:
    """Scrape URL in the background: markdown plus a summary, or an extraction with --schema."""
    schema = parse_object(schema_json, "--schema") if schema_json else None
    handle = state.client().scrape(
        url,
        openai_key=openai_key,
        model=model,
        prompt=prompt,
        schema=schema,
        max_age=max_age,
        **submission(max_attempts, queue_timeout, run_timeout),
    )
    if not wait:
        _started(handle)
        return
    finish(follow(handle, timeout), handle, _show_scrape)


def _show_scrape(status: TaskStatus) -> None:
    result = status.result if isinstance(status.result, dict) else {}
    if result.get("extraction") is not None:
        _show_json(result["extraction"])
        return
    if not out.is_terminal:
        click.echo(result.get("markdown", ""))
        if result.get("summary"):
            click.echo("\n---\n" + str(result["summary"]))
        return
    from rich.markdown import Markdown  # imported here: only this command renders markdown

    out.print(Markdown(str(result.get("markdown", ""))))
    if result.get("summary"):
        out.rule("summary")
        out.print(str(result["summary"]))
