"""The Redis Lua scripts: read once from lua/, each with the libraries it uses in front.

Every script takes one argument, a JSON object of named fields (`cjson.decode(ARGV[1])`), and
builds its keys from the prefixes it is given. In front of every script go `STATUS` (name ->
status, from TaskState) and `TERMINAL` (a set, from TERMINAL_STATUSES): the statuses are
defined in Python only.
"""

from __future__ import annotations

from pathlib import Path

from shared._status import TERMINAL_STATUSES, TaskState

LUA_DIR = Path(__file__).with_name("lua")


def _prelude() -> str:
    statuses = ", ".join(f"{status.name} = '{status.value}'" for status in TaskState)
    terminal = ", ".join(f"[STATUS.{TaskState(status).name}] = true" for status in sorted(TERMINAL_STATUSES))
    return f"local STATUS = {{{statuses}}}\nlocal TERMINAL = {{{terminal}}}\n"


def source(name: str, *libs: str) -> str:
    """lua/{name}.lua with lua/{lib}.lua for each lib in front, after the rendered constants."""
    parts = [_prelude(), *((LUA_DIR / f"{lib}.lua").read_text() for lib in libs)]
    return "\n".join([*parts, (LUA_DIR / f"{name}.lua").read_text()])
