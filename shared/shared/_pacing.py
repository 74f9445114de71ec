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

import orjson
from redis.asyncio import Redis

from shared._lua import read_lua

# Also the gateway's rate limit, run on its own Redis client (shared.GCRA_RESERVE_LUA).
GCRA_RESERVE_LUA = read_lua("shared", "gcra_reserve.lua")


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


@dataclass(slots=True)
class _Lease:
    first: float  # loop time of the lease's first slot
    next_index: int
    count: int


@dataclass(slots=True)
class _Turns:
    """One host's slots in this process: the lease being handed out, the one reserved ahead
    of it, and the reservation under way (at most one at a time)."""

    current: _Lease | None = None
    ahead: _Lease | None = None
    reserving: asyncio.Task[None] | None = None


class HostPacer:
    """At most `per_second` requests a second to each host, across every process.

    Slots are reserved from Redis in leases of about `lease_seconds` worth (at least one, at
    most `max_lease`) and handed out in process at their exact times, so a fast pace costs
    one Redis call per lease rather than per request. Once half a lease is handed out (or its
    slots are half-way to being skipped) the next one is reserved in the background, so
    senders wait on Redis only when the pace truly limits them (then its next slot is what
    they wait for) or when they outrun a round trip; a sender with a slot in hand never
    waits on Redis. A lease of one slot is not reserved ahead: at such a pace (under
    2 / lease_seconds a second, 100 by default) senders wait for their slots, not for Redis,
    and a slot reserved ahead would go to waste whenever the host goes quiet.

    The pace holds over all processes: every slot is one of Redis's (GCRA, one bucket per
    host, slots `1 / per_second` apart), none is used before its time, and none more than
    `max(1 / per_second, lease_seconds)` after it (later ones are skipped, not spent in a
    burst). So in any window of W seconds a host gets at most
    `per_second * (W + max(1 / per_second, lease_seconds)) + 1` requests, and never more
    than two leases per process beyond the pace. `per_second` <= 0 turns pacing off.
    """

    MAX_HOSTS = 10_000  # hosts whose leases are kept in process; past this they start afresh
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
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        # A slot later than this is skipped: at least one interval, so a slow pace's one slot
        # is not skipped for being a little late.
        self._late_s = max(self._interval, lease_seconds)
        self._hosts: dict[str, _Turns] = {}
        # What it costs, for tests and profiles: leases reserved from Redis, and turns that
        # waited for one because no slot was in hand.
        self.reservations = 0
        self.redis_waits = 0

    async def wait_turn(self, host: str) -> float:
        """Sleep until this host's next slot; return the seconds waited (PaceTooFar past max_wait_s)."""
        if self.per_second <= 0:
            return 0.0
        host = host.lower()
        turns = self._hosts.get(host)
        if turns is None:
            if len(self._hosts) >= self.MAX_HOSTS:
                self._hosts.clear()  # safe: every slot is reserved in Redis; this only saves calls
            turns = self._hosts[host] = _Turns()
        loop = asyncio.get_running_loop()
        waited = False
        while True:
            at = self._take(turns, loop.time())
            if at is not None:
                break
            if turns.ahead is not None:
                turns.current, turns.ahead = turns.ahead, None
                continue
            # No slot in hand: wait for the reservation under way, or make one. Shielded, so
            # a sender cancelled meanwhile does not cancel it for the others waiting on it.
            if not waited:
                waited = True
                self.redis_waits += 1
            await asyncio.shield(self._reserve(host, turns))
        current = turns.current
        now = loop.time()
        # The next lease is reserved once half of this one is handed out, or once its slots
        # are half-way to being skipped (a process sending slower than its leases' span), so
        # it has landed before this one runs out.
        if (
            current is not None
            and current.count > 1
            and turns.ahead is None
            and turns.reserving is None
            and (current.next_index * 2 >= current.count or at < now - self._late_s / 2)
        ):
            self._reserve(host, turns)
        delay = at - now
        # Within a millisecond is on time: no timer (and loop turn) per request at a fast pace.
        if delay > self.ON_TIME_S:
            await asyncio.sleep(delay)
            return delay
        return 0.0

    def _take(self, turns: _Turns, now: float) -> float | None:
        """The loop time of the current lease's next slot, taken; None when it has none left.

        Slots that went by more than `_late_s` ago (while this process was idle or busy) are
        skipped rather than spent in a burst.
        """
        lease = turns.current
        if lease is None:
            return None
        index = lease.next_index
        if lease.first + index * self._interval < now - self._late_s:
            index = max(index, math.ceil((now - self._late_s - lease.first) / self._interval))
        if index >= lease.count:
            turns.current = None
            return None
        lease.next_index = index + 1
        return lease.first + index * self._interval

    def _reserve(self, host: str, turns: _Turns) -> asyncio.Task[None]:
        """The reservation of the host's next lease: the one under way, or a new one. Its lease
        lands in `turns` (as the current one if that has none left, else as the one ahead)."""
        if turns.reserving is not None and not turns.reserving.done():
            return turns.reserving
        loop = asyncio.get_running_loop()

        async def reserve() -> None:
            # The lease lands here, before the task is done, and not in a done callback: those
            # run a loop turn later, and a waiter that found the task done would meanwhile see
            # neither a lease nor a reservation under way.
            try:
                self.reservations += 1
                wait = await self.pacer.reserve(
                    host, interval_s=self._interval, max_wait_s=self.max_wait_s, count=self.lease
                )
                lease = _Lease(loop.time() + wait, 0, self.lease)
                current = turns.current
                if current is None or current.next_index >= current.count:
                    turns.current = lease
                else:
                    turns.ahead = lease
            finally:
                turns.reserving = None

        def retrieved(task: asyncio.Task[None]) -> None:
            # The error (PaceTooFar, Redis down) of a reservation made ahead, that nobody waited
            # for, is not "never retrieved": whoever waits for the next one gets its own.
            if not task.cancelled():
                task.exception()
            if turns.reserving is task:  # cancelled before it ran: never leave it in the way
                turns.reserving = None

        # Held in `turns`: the loop keeps only a weak reference to a task.
        task = turns.reserving = loop.create_task(reserve())
        task.add_done_callback(retrieved)
        return task
