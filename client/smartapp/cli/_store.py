"""`cache ...` and `schedules ...`: your cache namespace, and endpoints run on a timer."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from smartapp._models import Schedule
from smartapp.cli._common import cli, emit, emit_model, json_option, out, parse_object, reply, state


@cli.group()
def cache() -> None:
    """Read and write your cache namespace."""


@cache.command("get")
@click.argument("key")
@json_option
def cache_get(key: str) -> None:
    """Print a key's value (JSON)."""
    entry = state.client().cache_get(key)
    reply(entry, json.dumps(entry.value, indent=2))


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
    entry = state.client().cache_put(key, parsed, ttl=ttl)
    reply(entry)


@cache.command("rm")
@click.argument("key")
def cache_rm(key: str) -> None:
    """Delete a key."""
    state.client().cache_delete(key)


@cache.command("ls")
@click.option("--prefix", default="", help="Only keys that start with this.")
@json_option
def cache_ls(prefix: str) -> None:
    """List your keys (all pages), with their seconds left and sizes."""
    items = list(state.client().iter_cache(prefix))
    if state.json:
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
    if state.json:
        emit_model(schedule)
        return
    when = (
        f"cron {schedule.cron} ({schedule.timezone})" if schedule.cron else f"every {schedule.every_seconds}s"
    )
    next_run = "paused" if schedule.paused else f"next {schedule.next_run_at}"
    out.print(
        f"{schedule.schedule_id}  {schedule.name}  {schedule.target.path}  {when}  {next_run}  runs={schedule.runs}"
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
    schedule = state.client().create_schedule(
        name, target, body, cron=cron, every_seconds=every, timezone=timezone, paused=paused
    )
    reply(schedule, schedule.schedule_id)


@schedules.command("list")
@json_option
def schedules_list() -> None:
    """Your schedules."""
    items = state.client().list_schedules()
    if state.json:
        emit([s.model_dump(mode="json") for s in items])
        return
    for schedule in items:
        _show_schedule(schedule)


@schedules.command("get")
@click.argument("schedule_id")
@json_option
def schedules_get(schedule_id: str) -> None:
    """One schedule: its timing, next and last run."""
    _show_schedule(state.client().get_schedule(schedule_id))


@schedules.command("pause")
@click.argument("schedule_id")
@json_option
def schedules_pause(schedule_id: str) -> None:
    """Stop its runs until resumed."""
    _show_schedule(state.client().update_schedule(schedule_id, paused=True))


@schedules.command("resume")
@click.argument("schedule_id")
@json_option
def schedules_resume(schedule_id: str) -> None:
    """Start its runs again, from the next tick."""
    _show_schedule(state.client().update_schedule(schedule_id, paused=False))


@schedules.command("rm")
@click.argument("schedule_id")
def schedules_rm(schedule_id: str) -> None:
    """Delete a schedule."""
    state.client().delete_schedule(schedule_id)
