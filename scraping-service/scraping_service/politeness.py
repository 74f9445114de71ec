"""Per-host politeness shared by every worker: the platform's GCRA pacer, plus cool-downs.

The bucket is shared.Pacer (GCRA in one Redis script, lua/gcra_reserve.lua in shared): one
key per host, the check and the reservation one atomic step across all workers, with
Redis's clock as the only clock. A caller does not poll: the script reserves its slot and
says how long to sleep. A Retry-After from a site sets a cool-down key that pushes every
reservation past it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from redis.asyncio import Redis

from shared import Pacer, PaceTooFar

__all__ = ["HostThrottle", "PolitenessTimeout", "ThrottlePolicy"]

# "pace" (not the former "bucket", which held milliseconds): the shared script keeps microseconds.
BUCKET_PREFIX = "scrape:pace:"
COOLDOWN_PREFIX = "scrape:cooldown:"


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
        self.policy = policy
        self._pacer = Pacer(redis, BUCKET_PREFIX, COOLDOWN_PREFIX)

    async def acquire(self, host: str, crawl_delay: float | None = None) -> float:
        """Wait for this host's next slot; return the seconds waited.

        A robots.txt Crawl-delay slows the host further (never speeds it up) and disables bursts.
        """
        interval_s = 1.0 / self.policy.requests_per_second
        burst = max(1, self.policy.burst)
        if crawl_delay is not None and crawl_delay > 0 and crawl_delay >= interval_s:
            interval_s, burst = crawl_delay, 1
        host = host.lower()
        try:
            wait_s = await self._pacer.reserve(
                host, interval_s=interval_s, burst=burst, max_wait_s=self.policy.max_wait_s
            )
        except PaceTooFar as exc:
            raise PolitenessTimeout(host, exc.wait_s) from None
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        return wait_s

    async def cool_down(self, host: str, seconds: float) -> None:
        """Hold every worker off this host for `seconds` (a Retry-After from the site)."""
        await self._pacer.cool_down(host.lower(), seconds)
