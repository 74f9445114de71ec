"""The service's Lua scripts (lua/*.lua), read once at import.

Each owner (Ledger, Inbox, Devices) registers what it runs with redis-py's register_script:
called by EVALSHA, loaded into Redis with SCRIPT LOAD the first time Redis lacks it.
"""

from __future__ import annotations

from shared import read_lua


def lua(name: str, prelude: str = "") -> str:
    """The script in lua/`name`, after `prelude` (definitions it shares with others)."""
    return read_lua("notification_service", name, prelude)
