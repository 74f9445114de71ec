"""Readiness answered from a recent result: probes cost the dependencies nothing.

Kubernetes, load balancers and anyone on the network may call `/ready` as often as they like;
each check opens a broker connection and pings Redis. One check runs at a time per process
(callers that arrive meanwhile wait for it) and its result is reused for READY_CACHE_SECONDS.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

ReadyResult = tuple[bool, dict[str, Any]]


class CachedReadiness:
    """Runs `check` at most once per `max_age` seconds and hands every caller its result."""

    def __init__(self, check: Callable[[], Awaitable[ReadyResult]], max_age: float) -> None:
        self._check = check
        self._max_age = max_age
        self._lock = asyncio.Lock()
        self._result: ReadyResult | None = None
        self._at = 0.0
        self._wall = 0.0

    def _fresh(self) -> ReadyResult | None:
        if self._result is not None and time.monotonic() - self._at < self._max_age:
            return self._result
        return None

    async def get(self) -> tuple[bool, dict[str, Any]]:
        """The result and its body, with `checked_at` (Unix time) and `age_seconds` added."""
        result = self._fresh()
        if result is None:
            async with self._lock:
                result = self._fresh()
                if result is None:
                    result = await self._check()
                    self._result, self._at, self._wall = result, time.monotonic(), time.time()
        ok, body = result
        age = max(0.0, time.monotonic() - self._at)
        return ok, {**body, "checked_at": round(self._wall, 3), "age_seconds": round(age, 3)}
