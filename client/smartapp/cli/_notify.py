"""`notify ...` and `inbox`: send notifications, read their delivery, follow your inbox."""

from __future__ import annotations

import sys
from typing import Any

import click

from smartapp.cli._common import cli, emit_model, err, json_option, out, parse_object, reply, state


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
    accepted = state.client().send_notification(
        user_id, title, message, parse_object(data_json, "--data"), ttl=ttl, urgency=urgency
    )
    reply(accepted, accepted.notification_id)


@notify.command("status")
@click.argument("notification_id")
@json_option
def notify_status(notification_id: str) -> None:
    """Where a notification stands on each device."""
    status = state.client().notification_status(notification_id)
    if state.json:
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
    client = state.client()
    page = client.inbox(limit, unread=unread)
    items = list(reversed(page.items))  # oldest first, so --follow continues in order
    for item in items:
        _show_item(item)
    if not follow:
        if not state.json:
            err.print(f"{page.unread_count} unread")
        return
    since = max((i.seq for i in page.items), default=None)
    for item in client.follow_inbox(since=since):
        _show_item(item)


def _show_item(item: Any) -> None:
    if state.json:
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
    result = state.client().cancel_notification(notification_id)
    reply(result, f"{result.notification_id}: {result.status} ({result.cancelled_deliveries} deliveries)")


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
    client = state.client()
    prefs = (
        client.get_preferences()
        if set_json is None
        else client.set_preferences(parse_object(set_json, "--set"))
    )
    if state.json:
        emit_model(prefs)
        return
    channels = ", ".join(
        f"{name} {'on' if on else 'off'}" for name, on in prefs.channels.model_dump().items()
    )
    out.print(f"channels: {channels}")
    q = prefs.quiet_hours
    out.print(f"quiet hours: {q.start}-{q.end} {q.timezone}" if q else "quiet hours: none")
