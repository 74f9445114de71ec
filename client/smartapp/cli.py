"""The `smartapp` command.

Exit status: 0 success; 1 the task failed (FAILURE, REVOKED, EXPIRED) or another error
(not found, conflict, service unavailable, unreachable); 2 bad usage (a wrong option, bad
JSON, or a request the platform refused as invalid: 400/413/422); 3 the token was refused
(401, or 403 for a missing scope).
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn, TypeVar

import click
from click.shell_completion import CompletionItem
from rich.console import Console
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
from smartapp._base import DEFAULT_URL, version
from smartapp._client import Client
from smartapp._errors import (
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    SmartappError,
    Unauthorized,
    ValidationError,
)
from smartapp._models import Schedule, TaskRetry, TaskStatus
from smartapp._tasks import TaskHandle

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
LONG_RUNNING = "long-running"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class State:
    url: str | None = None
    token: str | None = None
    json: bool = False
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        if self._client is None:
            settings = _config.resolve(self.url, self.token)
            self._client = Client(settings.url, settings.token)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


_state = State()
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _set_json(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if value:
        _state.json = True


def json_option(f: F) -> F:
    """`--json` on every command as well as before it (`smartapp --json task list`)."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=False,
        callback=_set_json,
        help="Print machine-readable JSON (and no progress bar).",
    )(f)


def submit_options(f: F) -> F:
    """--max-attempts, --queue-timeout and --run-timeout: what every submission may carry."""
    for option in reversed(
        (
            click.option(
                "--max-attempts",
                type=click.IntRange(1, 20),
                default=None,
                help="Attempts in all, the first included (default: the task type's).",
            ),
            click.option(
                "--queue-timeout",
                type=click.FloatRange(0, min_open=True),
                default=None,
                help="Seconds it may wait to start; not started by then, it ends EXPIRED.",
            ),
            click.option(
                "--run-timeout",
                type=click.FloatRange(0, min_open=True),
                default=None,
                help="Seconds an attempt may run; stopped then (FAILURE, TimeLimitExceeded).",
            ),
        )
    ):
        f = option(f)
    return f


def submission(
    max_attempts: int | None, queue_timeout: float | None, run_timeout: float | None
) -> dict[str, Any]:
    """The SDK's keyword arguments for the options of `submit_options`."""
    return {
        "retry": None if max_attempts is None else TaskRetry(max_attempts=max_attempts),
        "queue_timeout_seconds": queue_timeout,
        "run_timeout_seconds": run_timeout,
    }


def parse_time(value: str | None, what: str) -> datetime | None:
    """An ISO 8601 time; without a zone it is taken as local time, as `date` shows it."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            "not an ISO 8601 time, e.g. 2026-11-30T12:00+00:00", param_hint=what
        ) from None
    return when if when.tzinfo is not None else when.astimezone()


def parse_json(value: str | None, what: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=what) from None


def parse_object(value: str | None, what: str) -> dict[str, Any]:
    parsed = parse_json(value, what)
    if parsed is None:
        return {}
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint=what)
    return parsed


def emit(data: Any) -> None:
    """JSON for machines: one document on stdout."""
    click.echo(json.dumps(data, indent=2, default=str))


def emit_model(model: Any) -> None:
    click.echo(model.model_dump_json(indent=2))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--url", envvar=_config.ENV_URL, help="Gateway URL (default: from `login`, else localhost:8000)."
)
@click.option("--token", envvar=_config.ENV_TOKEN, help="Bearer token (default: from `login`).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON (and no progress bar).")
@click.version_option(version(), prog_name="smartapp")
def cli(url: str | None, token: str | None, as_json: bool) -> None:
    """Start and follow background work on the smart_application platform.

    Configure once with `smartapp login`, or with SMARTAPP_URL and SMARTAPP_TOKEN.
    """
    _state.url, _state.token = url, token
    _state.json = _state.json or as_json


# --- login -------------------------------------------------------------------------------------


@cli.command()
@click.option("--url", "login_url", help="Gateway URL.", default=None)
@click.option(
    "--token",
    "login_token",
    prompt="Token",
    hide_input=True,
    help="Bearer token (prompted, hidden, when not given).",
)
def login(login_url: str | None, login_token: str) -> None:
    """Store the URL and token in your config dir (file mode 0600)."""
    url = login_url or _state.url or _config.load().get("url") or DEFAULT_URL
    token = login_token.strip()
    if not token:
        raise click.BadParameter("must not be empty", param_hint="--token")
    path = _config.save(url, token)
    err.print(f"Saved {url} and your token to {path}")


@cli.command()
def logout() -> None:
    """Forget the stored URL and token."""
    removed = _config.forget()
    err.print("Forgotten." if removed else "Nothing was stored.")


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(smartapp completion bash)"."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(cli, {}, "smartapp", "_SMARTAPP_COMPLETE").source())


# --- tasks -------------------------------------------------------------------------------------


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
    if _state.json or not out.is_terminal:
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
    if _state.json:
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
    if _state.json:
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
    client = _state.client()
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
    handle = _state.client().task(task_id)
    finish(follow(handle, timeout), handle)


@task.command("status")
@click.argument("task_id")
@json_option
def task_status(task_id: str) -> None:
    """A task's status (and its result or error)."""
    status = _state.client().get_task(task_id)
    if _state.json:
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
    found = _state.client().iter_tasks(
        status,
        task_type=task_type,
        since=parse_time(since, "--since"),
        until=parse_time(until, "--until"),
        page_size=min(limit, 500),
    )
    tasks = list(itertools.islice(found, limit))
    if _state.json:
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
    answer = _state.client().cancel(task_id)
    if _state.json:
        emit_model(answer)
    else:
        click.echo(f"{answer.task_id} {answer.status} (cancel requested)")


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
    answer = _state.client().retry_task(task_id, openai_key)
    if _state.json:
        emit_model(answer)
    else:
        click.echo(f"{answer.task_id} {answer.status} (retry of {answer.retry_of})")


@task.command("types")
@json_option
def task_types() -> None:
    """The registered task types."""
    types = _state.client().task_types()
    if _state.json:
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
    handle = _state.client().scrape(
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


# --- notifications -----------------------------------------------------------------------------


@cli.group()
def notify() -> None:
    """Send notifications and read their delivery status."""


@notify.command("send")
@click.option("--to", "user_id", required=True, help="The recipient's user id.")
@click.option("--title", required=True)
@click.option("--message", default="")
@click.option("--data", "data_json", default=None, help="Extra JSON object for the receiver.")
@click.option("--ttl", type=int, default=None, help="Seconds it stays worth delivering.")
@click.option("--urgency", type=click.Choice(["very-low", "low", "normal", "high"]), default=None)
@json_option
def notify_send(
    user_id: str, title: str, message: str, data_json: str | None, ttl: int | None, urgency: str | None
) -> None:
    """Send a notification to a user (your own id, or any with the notify:send scope)."""
    accepted = _state.client().send_notification(
        user_id, title, message, parse_object(data_json, "--data"), ttl=ttl, urgency=urgency
    )
    if _state.json:
        emit_model(accepted)
    else:
        click.echo(accepted.notification_id)


@notify.command("status")
@click.argument("notification_id")
@json_option
def notify_status(notification_id: str) -> None:
    """Where a notification stands on each device."""
    status = _state.client().notification_status(notification_id)
    if _state.json:
        emit_model(status)
        return
    out.print(f"{status.notification_id}: {status.status}")
    for d in status.deliveries:
        out.print(f"  {d.device_id} {d.channel} {d.status} attempts={d.attempts} {d.error or ''}")


@cli.command()
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option("--unread", is_flag=True, help="Only unread notifications.")
@click.option("--follow", "-f", is_flag=True, help="Then stream new ones as they arrive (Ctrl-C stops).")
@json_option
def inbox(limit: int, unread: bool, follow: bool) -> None:
    """Your notifications, newest first; --follow streams new ones."""
    client = _state.client()
    page = client.inbox(limit, unread=unread)
    items = list(reversed(page.items))  # oldest first, so --follow continues in order
    for item in items:
        _show_item(item)
    if not follow:
        if not _state.json:
            err.print(f"{page.unread_count} unread")
        return
    since = max((i.seq for i in page.items), default=None)
    for item in client.follow_inbox(since=since):
        _show_item(item)


def _show_item(item: Any) -> None:
    if _state.json:
        click.echo(item.model_dump_json())  # one JSON document per line: streams well
    else:
        mark = " " if item.read else "*"
        out.print(f"{mark} {item.created_at}  {item.sender}: [bold]{item.title}[/bold]  {item.message}")
    sys.stdout.flush()


@notify.command("cancel")
@click.argument("notification_id")
@json_option
def notify_cancel(notification_id: str) -> None:
    """Cancel a notification not yet sent (scheduled, queued or deferred)."""
    result = _state.client().cancel_notification(notification_id)
    if _state.json:
        emit_model(result)
    else:
        click.echo(f"{result.notification_id}: {result.status} ({result.cancelled_deliveries} deliveries)")


@notify.command("prefs")
@click.option(
    "--set",
    "set_json",
    default=None,
    help='Replace them with this JSON, e.g. \'{"channels": {"webhook": false}, "quiet_hours": null}\'.',
)
@json_option
def notify_prefs(set_json: str | None) -> None:
    """Show your notification preferences (channels, quiet hours); --set replaces them."""
    client = _state.client()
    prefs = (
        client.get_preferences()
        if set_json is None
        else client.set_preferences(parse_object(set_json, "--set"))
    )
    if _state.json:
        emit_model(prefs)
        return
    channels = ", ".join(
        f"{name} {'on' if on else 'off'}" for name, on in prefs.channels.model_dump().items()
    )
    out.print(f"channels: {channels}")
    q = prefs.quiet_hours
    out.print(f"quiet hours: {q.start}-{q.end} {q.timezone}" if q else "quiet hours: none")


# --- cache -------------------------------------------------------------------------------------


@cli.group()
def cache() -> None:
    """Read and write your cache namespace."""


@cache.command("get")
@click.argument("key")
@json_option
def cache_get(key: str) -> None:
    """Print a key's value (JSON)."""
    entry = _state.client().cache_get(key)
    if _state.json:
        emit_model(entry)
    else:
        click.echo(json.dumps(entry.value, indent=2))


@cache.command("put")
@click.argument("key")
@click.argument("value")
@click.option("--ttl", type=int, default=None, help="Seconds until it expires.")
@click.option("--string", "as_string", is_flag=True, help="Store VALUE as a string, not parsed as JSON.")
@json_option
def cache_put(key: str, value: str, ttl: int | None, as_string: bool) -> None:
    """Store VALUE (JSON; a word that is not JSON is stored as a string) under KEY."""
    parsed: Any = value
    if not as_string:
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
    entry = _state.client().cache_put(key, parsed, ttl=ttl)
    if _state.json:
        emit_model(entry)


@cache.command("rm")
@click.argument("key")
def cache_rm(key: str) -> None:
    """Delete a key."""
    _state.client().cache_delete(key)


@cache.command("ls")
@click.option("--prefix", default="", help="Only keys that start with this.")
@json_option
def cache_ls(prefix: str) -> None:
    """List your keys (all pages), with their seconds left and sizes."""
    items = list(_state.client().iter_cache(prefix))
    if _state.json:
        emit([i.model_dump() for i in items])
        return
    table = Table("key", "ttl (s)", "bytes", box=None)
    for i in items:
        table.add_row(i.key, str(i.ttl), str(i.size))
    out.print(table)


# --- schedules ---------------------------------------------------------------------------------


@cli.group()
def schedules() -> None:
    """Run an endpoint on a cron or every N seconds."""


def _show_schedule(schedule: Schedule) -> None:
    if _state.json:
        emit_model(schedule)
        return
    when = (
        f"cron {schedule.cron} ({schedule.timezone})" if schedule.cron else f"every {schedule.every_seconds}s"
    )
    state = "paused" if schedule.paused else f"next {schedule.next_run_at}"
    out.print(
        f"{schedule.schedule_id}  {schedule.name}  {schedule.target.path}  {when}  {state}  runs={schedule.runs}"
    )


@schedules.command("create")
@click.option("--name", required=True)
@click.option("--cron", default=None, help="Five cron fields, in --timezone.")
@click.option("--every", "every", type=int, default=None, help="Instead of --cron: every N seconds.")
@click.option("--timezone", default=None, help="IANA zone of --cron (default UTC).")
@click.option(
    "--target",
    "target",
    required=True,
    type=click.Choice(["background-task", "long-running-task", "background-scraping", "send-notification"]),
    help="The endpoint each run submits to.",
)
@click.option("--body", "body_json", default=None, help="That endpoint's request body (JSON object).")
@click.option("--paused", is_flag=True, help="Create it paused (resume starts it).")
@json_option
def schedules_create(
    name: str,
    cron: str | None,
    every: int | None,
    timezone: str | None,
    target: str,
    body_json: str | None,
    paused: bool,
) -> None:
    """Create a schedule; prints its id (--json: the whole schedule)."""
    if (cron is None) == (every is None):
        raise click.UsageError("give exactly one of --cron and --every")
    body = parse_object(body_json, "--body")
    schedule = _state.client().create_schedule(
        name, target, body, cron=cron, every_seconds=every, timezone=timezone, paused=paused
    )
    if _state.json:
        emit_model(schedule)
    else:
        click.echo(schedule.schedule_id)


@schedules.command("list")
@json_option
def schedules_list() -> None:
    """Your schedules."""
    items = _state.client().list_schedules()
    if _state.json:
        emit([s.model_dump(mode="json") for s in items])
        return
    for schedule in items:
        _show_schedule(schedule)


@schedules.command("get")
@click.argument("schedule_id")
@json_option
def schedules_get(schedule_id: str) -> None:
    """One schedule: its timing, next and last run."""
    _show_schedule(_state.client().get_schedule(schedule_id))


@schedules.command("pause")
@click.argument("schedule_id")
@json_option
def schedules_pause(schedule_id: str) -> None:
    """Stop its runs until resumed."""
    _show_schedule(_state.client().update_schedule(schedule_id, paused=True))


@schedules.command("resume")
@click.argument("schedule_id")
@json_option
def schedules_resume(schedule_id: str) -> None:
    """Start its runs again, from the next tick."""
    _show_schedule(_state.client().update_schedule(schedule_id, paused=False))


@schedules.command("rm")
@click.argument("schedule_id")
def schedules_rm(schedule_id: str) -> None:
    """Delete a schedule."""
    _state.client().delete_schedule(schedule_id)


# --- entry point -------------------------------------------------------------------------------


def _exit_code(error: SmartappError) -> int:
    if isinstance(error, Unauthorized | Forbidden):
        return EXIT_AUTH
    if isinstance(error, BadRequest | ValidationError | PayloadTooLarge):
        return EXIT_USAGE
    return EXIT_FAILED


def _report(error: SmartappError) -> NoReturn:
    code = _exit_code(error)
    if _state.json:
        click.echo(
            json.dumps(
                {"error": {"code": error.code, "message": error.message, "request_id": error.request_id}}
            ),
            err=True,
        )
    else:
        err.print(f"[red]Error[/red] {error.code}: {error.message}", markup=True)
        if error.request_id:
            err.print(f"request_id: {error.request_id}")
        if code == EXIT_AUTH:
            err.print("Check your token (smartapp login, or SMARTAPP_TOKEN) and its scopes.")
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> NoReturn:
    try:
        cli.main(args=argv, prog_name="smartapp", standalone_mode=False)
    except click.exceptions.Abort:
        err.print("Aborted.")
        raise SystemExit(130) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except SmartappError as exc:
        _report(exc)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    finally:
        _state.close()
    raise SystemExit(EXIT_OK)
