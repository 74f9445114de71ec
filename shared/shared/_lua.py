"""The Redis Lua scripts: read once from a package's lua/ folder, the shared ones with their libraries in front.

Every script takes one argument, a JSON object of named fields (`cjson.decode(ARGV[1])`), and
builds its keys from the prefixes it is given. In front of every script go `STATUS` (name ->
status, from TaskState) and `TERMINAL` (a set, from TERMINAL_STATUSES): the statuses are
defined in Python only.
"""

from __future__ import annotations

from importlib import resources

from shared._status import TERMINAL_STATUSES, TaskState


def read_lua(package: str, name: str, prelude: str = "") -> str:
    """The script `name` in `package`'s lua/ folder, after `prelude`: every package reads its Lua so."""
    return prelude + (resources.files(package) / "lua" / name).read_text(encoding="utf-8")


def _prelude() -> str:
    statuses = ", ".join(f"{status.name} = '{status.value}'" for status in TaskState)
    terminal = ", ".join(f"[STATUS.{TaskState(status).name}] = true" for status in sorted(TERMINAL_STATUSES))
    return f"local STATUS = {{{statuses}}}\nlocal TERMINAL = {{{terminal}}}\n"


def source(name: str, *libs: str) -> str:
    """lua/{name}.lua with lua/{lib}.lua for each lib in front, after the rendered constants."""
    parts = [_prelude(), *(read_lua("shared", f"{lib}.lua") for lib in libs)]
    return "\n".join([*parts, read_lua("shared", f"{name}.lua")])
