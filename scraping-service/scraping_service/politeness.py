"""Per-host politeness shared by every worker: a token bucket in Redis, plus cool-downs.

The bucket is kept as GCRA (the generic cell rate algorithm, a token bucket expressed as one
"theoretical arrival time"): one Redis key per host, updated by a Lua script so that the
check and the reservation are one atomic step across all workers, with Redis's clock as the
only clock. A caller does not poll: the script reserves its slot and says how long to sleep.
A Retry-After from a site sets a cool-down key that pushes every reservation past it.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from redis.asyncio import Redis

__all__ = ["HostThrottle", "PolitenessTimeout", "ThrottlePolicy"]

BUCKET_PREFIX = "scrape:bucket:"
COOLDOWN_PREFIX = "scrape:cooldown:"

# KEYS[1] bucket (theoretical arrival time, ms), KEYS[2] cool-down marker (its PTTL counts).
# ARGV[1] interval ms, ARGV[2] burst, ARGV[3] max wait ms.
# Returns the ms to wait before going (slot reserved), or -(ms) when that exceeds max wait.
_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local start = tat - (burst - 1) * interval
local cool = redis.call('PTTL', KEYS[2])
if cool > 0 and now + cool > start then start = now + cool end
if start < now then start = now end
local wait = start - now
if wait > max_wait then return -wait end
local new_tat = math.max(tat, start) + interval
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now + 1000)
return wait
"""


class PolitenessTimeout(Exception):
    """The host cannot be visited within the wait we allow; try the task again later."""

    def __init__(self, host: str, wait_s: float) -> None:
        super().__init__(f"The site {host} asks us to slow down; the next slot is {wait_s:.0f}s away.")
        self.host = host
        self.wait_s = wait_s


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    requests_per_second: float = 1.0
    burst: int = 2
    max_wait_s: float = 30.0


class HostThrottle:
    def __init__(self, redis: Redis, policy: ThrottlePolicy) -> None:
        self._redis = redis
        self.policy = policy
        self._script = redis.register_script(_GCRA_LUA)

    async def acquire(self, host: str, crawl_delay: float | None = None) -> float:
        """Wait for this host's next slot; return the seconds waited.

        A robots.txt Crawl-delay slows the host further (never speeds it up) and disables bursts.
        """
        interval_s = 1.0 / self.policy.requests_per_second
        burst = max(1, self.policy.burst)
        if crawl_delay is not None and crawl_delay > 0 and crawl_delay >= interval_s:
            interval_s, burst = crawl_delay, 1
        interval_ms = max(1, math.ceil(interval_s * 1000))
        max_wait_ms = int(self.policy.max_wait_s * 1000)
        host = host.lower()
        wait_ms = int(
            await self._script(
                keys=[BUCKET_PREFIX + host, COOLDOWN_PREFIX + host],
                args=[interval_ms, burst, max_wait_ms],
            )
        )
        if wait_ms < 0:
            raise PolitenessTimeout(host, -wait_ms / 1000)
        if wait_ms:
            await asyncio.sleep(wait_ms / 1000)
        return wait_ms / 1000

    async def cool_down(self, host: str, seconds: float) -> None:
        """Hold every worker off this host for `seconds` (a Retry-After from the site)."""
        ms = max(1, int(seconds * 1000))
        key = COOLDOWN_PREFIX + host.lower()
        # Never shorten a cool-down that is already longer.
        current = await self._redis.pttl(key)
        if current is None or int(current) < ms:
            await self._redis.set(key, "1", px=ms)
