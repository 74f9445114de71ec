"""What every command shares: the root group, the client, --json and the output helpers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import click
from rich.console import Console

from smartapp import _config
from smartapp._base import version
from smartapp._call import SubmitOptions
from smartapp._client import Client
from smartapp._models import TaskRetry

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


state = State()
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _set_json(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if value:
        state.json = True


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
) -> SubmitOptions:
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


def reply(model: Any, line: str | None = None) -> None:
    """A command's answer: the model as JSON with --json, else `line` for a person (or nothing)."""
    if state.json:
        emit_model(model)
    elif line is not None:
        click.echo(line)


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
    state.url, state.token = url, token
    state.json = state.json or as_json
