"""What the client tests share: the platform they run against, users, running the command."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Platform:
    url: str  # the gateway
    services: dict[str, str]  # each service's own base URL (for its /openapi.json)
    pages: Any  # scrape_fakes.PageServer
    openai_key: str
    hook_port: int  # an allowed webhook target (nothing listens: registration only)


@dataclass(frozen=True)
class User:
    sub: str
    token: str


SMARTAPP = str(Path(sys.executable).parent / "smartapp")  # the console script the package installs


def cli_env(platform: Platform, token: str | None, config_home: Path, **extra: str) -> dict[str, str]:
    """The command's environment: this platform and token, a config dir of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTAPP_")}
    env.update({"XDG_CONFIG_HOME": str(config_home), "SMARTAPP_URL": platform.url, "NO_COLOR": "1"})
    if token is not None:
        env["SMARTAPP_TOKEN"] = token
    env.update(extra)
    return env


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 90, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SMARTAPP, *args], env=env, capture_output=True, text=True, timeout=timeout, input=stdin, check=False
    )
