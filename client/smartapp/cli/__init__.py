"""The `smartapp` command.

Exit status: 0 success; 1 the task failed (FAILURE, REVOKED, EXPIRED) or another error
(not found, conflict, service unavailable, unreachable); 2 bad usage (a wrong option, bad
JSON, or a request the platform refused as invalid: 400/413/422); 3 the token was refused
(401, or 403 for a missing scope).
"""

from __future__ import annotations

import json
from typing import NoReturn

import click

from smartapp._errors import (
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    SmartappError,
    Unauthorized,
    ValidationError,
)
from smartapp.cli import _notify, _setup, _store, _tasks  # noqa: F401  (each adds its commands to `cli`)
from smartapp.cli._common import EXIT_AUTH, EXIT_FAILED, EXIT_OK, EXIT_USAGE, cli, err, state

__all__ = ["cli", "main"]


def _exit_code(error: SmartappError) -> int:
    if isinstance(error, Unauthorized | Forbidden):
        return EXIT_AUTH
    if isinstance(error, BadRequest | ValidationError | PayloadTooLarge):
        return EXIT_USAGE
    return EXIT_FAILED


def _report(error: SmartappError) -> NoReturn:
    code = _exit_code(error)
    if state.json:
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
        state.close()
    raise SystemExit(EXIT_OK)
