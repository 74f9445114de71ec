"""Where the command keeps its URL and token: `<config dir>/smartapp/config.json`, mode 0600."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click

from smartapp._base import DEFAULT_URL

ENV_URL = "SMARTAPP_URL"
# The name of an environment variable, not a secret.
ENV_TOKEN = "SMARTAPP_TOKEN"  # noqa: S105


def config_path() -> Path:
    # click.get_app_dir honours XDG_CONFIG_HOME on Linux, ~/Library/Application Support on
    # macOS and %APPDATA% on Windows.
    return Path(click.get_app_dir("smartapp")) / "config.json"


@dataclass(frozen=True)
class Settings:
    url: str
    token: str | None


def load(path: Path | None = None) -> dict[str, str]:
    path = path or config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    return (
        {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}
        if isinstance(data, dict)
        else {}
    )


def resolve(url: str | None, token: str | None) -> Settings:
    """Flags first, then SMARTAPP_URL/SMARTAPP_TOKEN (click reads them into the flags), then the file."""
    stored = load() if url is None or token is None else {}
    return Settings(url=url or stored.get("url") or DEFAULT_URL, token=token or stored.get("token"))


def save(url: str, token: str, path: Path | None = None) -> Path:
    """Write the file atomically, readable by its owner only from its first byte.

    The temporary file is created with mode 0600 (`mkstemp`), filled, flushed to disk and
    renamed over the old one: no moment exists where the token is in a file others may read,
    or where a crash leaves half a file.
    """
    path = path or config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            json.dump({"url": url, "token": token}, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise
    return path


def forget(path: Path | None = None) -> bool:
    path = path or config_path()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
