"""Pacing shared by every process: a GCRA bucket per key in Redis (lua/gcra_reserve.lua).

One implementation for whatever the platform must not flood: the scraping workers pace each
site they fetch from, the notification workers each host they deliver to. A caller reserves
its slot (or a lease of several) in one script call and sleeps until it comes; nobody polls.
A Retry-After from the other side sets a cool-down that pushes every reservation past it.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from importlib import resources

import orjson
from redis.asyncio import Redis

# Also the gateway's rate limit, run on its own Redis client (shared.GCRA_RESERVE_LUA).
GCRA_RESERVE_LUA = (resources.files("shared") / "lua" / "gcra_reserve.lua").read_text(encoding="utf-8")


class PaceTooFar(Exception):
    """The next slot is further away than the caller may wait; nothing was reserved."""

    def __init__(self, key: str, wait_s: float) -> None:
        super().__init__(f"{key}: the next slot is {wait_s:.1f} s away")
        self.key = key
        self.wait_s = wait_s


class Pacer:
    """Reserve slots of a rate per key, atomically across every process that shares Redis."""

    def __init__(self, redis: Redis, prefix: str, cooldown_prefix: str | None = None) -> None:
        self._redis = redis
        self.prefix = prefix
        self.cooldown_prefix = cooldown_prefix or prefix + "cooldown:"
        self._script = redis.register_script(GCRA_RESERVE_LUA)

    async def reserve(
        self, key: str, *, interval_s: float, burst: int = 1, max_wait_s: float, count: int = 1
    ) -> float:
        """Reserve `count` consecutive slots; return the seconds until the first (PaceTooFar
        when that is past `max_wait_s`). Slot i comes i * interval_s after the first."""
        args = {
            "interval_us": max(1, math.ceil(interval_s * 1_000_000)),
            "burst": max(1, burst),
            "max_wait_us": int(max_wait_s * 1_000_000),
            "count": max(1, count),
        }
        answer = orjson.loads(
            await self._script(
                keys=[self.prefix + key, self.cooldown_prefix + key], args=[orjson.dumps(args)]
            )
        )
        wait_s = float(answer["wait_us"]) / 1_000_000
        if not answer["ok"]:
            raise PaceTooFar(key, wait_s)
        return wait_s

    async def cool_down(self, key: str, seconds: float) -> None:
        """Hold every process off `key` for `seconds`; never shortens a longer cool-down."""
        ms = max(1, int(seconds * 1000))
        marker = self.cooldown_prefix + key
        current = await self._redis.pttl(marker)
        if current is None or int(current) < ms:
            await self._redis.set(marker, "1", px=ms)


@dataclass
class _Lease:
    first: float  # loop time of the lease's first slot
    next_index: int
    count: int


class HostPacer:
    """At most `per_second` requests a second to each host, across every process.

    Slots are reserved from Redis in leases of about `lease_seconds` worth (at least one), and
    handed out in process at their exact times, so a fast pace costs one Redis call per lease
    rather than per request, and the pace over all processes still holds. `per_second` <= 0
    turns pacing off.
    """

    MAX_HOSTS = 10_000  # leases and locks kept in process; past this they start afresh
    ON_TIME_S = 0.001

    def __init__(
        self,
        pacer: Pacer,
        per_second: float,
        *,
        max_wait_s: float,
        lease_seconds: float = 0.02,
        max_lease: int = 64,
    ) -> None:
        self.pacer = pacer
        self.per_second = per_second
        self.max_wait_s = max_wait_s
        self.lease_seconds = lease_seconds
        self.lease = max(1, min(max_lease, int(per_second * lease_seconds)))
        self._leases: dict[str, _Lease] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def wait_turn(self, host: str) -> float:
        """Sleep until this host's next slot; return the seconds waited (PaceTooFar past max_wait_s)."""
        if self.per_second <= 0:
            return 0.0
        host = host.lower()
        loop = asyncio.get_running_loop()
        if len(self._locks) >= self.MAX_HOSTS:
            self._locks.clear()  # safe: every lease is reserved in Redis; the lock only saves calls
        lock = self._locks.setdefault(host, asyncio.Lock())
        interval = 1.0 / self.per_second
        async with lock:
            lease = self._leases.get(host)
            # A lease whose slots went by while this process was idle is dropped, not spent in
            # a burst; late by less than a lease's span it is used (at a fast pace, the slots
            # of one lease are microseconds apart and always a little behind).
            if (
                lease is None
                or lease.next_index >= lease.count
                or lease.first + lease.next_index * interval < loop.time() - max(interval, self.lease_seconds)
            ):
                if len(self._leases) >= self.MAX_HOSTS:
                    self._leases.clear()
                wait = await self.pacer.reserve(
                    host, interval_s=interval, max_wait_s=self.max_wait_s, count=self.lease
                )
                lease = self._leases[host] = _Lease(loop.time() + wait, 0, self.lease)
            at = lease.first + lease.next_index * interval
            lease.next_index += 1
        delay = at - loop.time()
        # Within a millisecond is on time: no timer (and loop turn) per request at a fast pace.
        if delay > self.ON_TIME_S:
            await asyncio.sleep(delay)
            return delay
        return 0.0
