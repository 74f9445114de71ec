"""`login`, `logout` and `completion`: where the command finds the platform and your shell finds the command."""

from __future__ import annotations

import click

from smartapp import _config
from smartapp._base import DEFAULT_URL
from smartapp.cli._common import cli, err, state


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
    url = login_url or state.url or _config.load().get("url") or DEFAULT_URL
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
