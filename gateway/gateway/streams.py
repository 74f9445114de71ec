"""Event-stream slots: at most MAX_STREAMS_PER_USER open per user, counted across replicas.

Each open stream is one member of the user's sorted set in Redis, scored by when its lease
ends (Redis's clock, so replicas with drifting clocks agree). Opening a stream drops expired
members, counts the rest and adds its own in one script call; closing removes it. Each replica
renews the leases of its own streams every third of STREAM_LEASE_SECONDS, so the slots of a
replica that crashed (no close, no renewal) are free again one lease later, without anyone
having to notice the crash.

Redis down: like the rate limiter, the cap fails soft. The replica counts its own streams and
applies the same cap to them alone; the leases are written again by the next renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from dataclasses import dataclass
from urllib.parse import quote

from prometheus_client import Counter, Gauge

from gateway.pipelined_redis import PipelinedRedis, RedisReplyError, RedisUnavailable, Script
from gateway.settings import GatewaySettings

log = logging.getLogger("gateway.streams")

STREAMS_OPEN = Gauge("smartapp_gateway_streams_open", "Event streams open through this gateway process")
STREAMS_REFUSED = Counter(
    "smartapp_gateway_streams_refused_total", "Event streams refused: the user had MAX_STREAMS_PER_USER open"
)

# KEYS[1] the user's set; ARGV: cap, lease (ms), member. Returns {opened, open_now}.
ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[1]) then return {0, n} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, n + 1}
"""

# KEYS[1] the user's set; ARGV: lease (ms), then this replica's members in it. Re-adds a member
# that expired meanwhile (a Redis outage): the stream is still open, so it still counts.
RENEW_LUA = """
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], until_ms, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return #ARGV - 1
"""

RELEASE_LUA = "return redis.call('ZREM', KEYS[1], ARGV[1])"


def slots_key(user: str) -> str:
    return f"gw:streams:{quote(user, safe='')}"


@dataclass(frozen=True, slots=True)
class Slot:
    user: str
    member: str


class StreamSlots:
    def __init__(self, settings: GatewaySettings, client: PipelinedRedis) -> None:
        self.cap = settings.max_streams_per_user
        self.lease_ms = round(settings.stream_lease_seconds * 1000)
        self.renew_every = settings.stream_lease_seconds / 3
        self._acquire = Script(client, ACQUIRE_LUA)
        self._renew = Script(client, RENEW_LUA)
        self._release = Script(client, RELEASE_LUA)
        # Members are unique across replicas and restarts: a random id per process, then a count.
        self._prefix = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)
        self._open: dict[str, set[str]] = {}
        self._warned_at = 0.0

    async def acquire(self, user: str) -> Slot | None:
        """A slot for one more stream of `user`, or None when they have `cap` open."""
        member = f"{self._prefix}:{next(self._ids)}"
        mine = self._open.setdefault(user, set())
        try:
            opened, _ = await self._acquire(slots_key(user), self.cap, self.lease_ms, member)
        except (RedisUnavailable, RedisReplyError, OSError, ValueError) as exc:
            self._warn(exc)
            opened = len(mine) < self.cap
        if not opened:
            if not mine:
                del self._open[user]
            STREAMS_REFUSED.inc()
            return None
        mine.add(member)
        STREAMS_OPEN.inc()
        return Slot(user, member)

    async def release(self, slot: Slot) -> None:
        mine = self._open.get(slot.user)
        if mine is None or slot.member not in mine:
            return
        mine.discard(slot.member)
        if not mine:
            del self._open[slot.user]
        STREAMS_OPEN.dec()
        try:
            await self._release(slots_key(slot.user), slot.member)
        except (RedisUnavailable, RedisReplyError, OSError) as exc:
            self._warn(exc)  # the lease runs out instead

    async def renew(self) -> None:
        """Extend the lease of every stream this process has open (pipelined: one write)."""
        calls = [self._renew(slots_key(u), self.lease_ms, *ms) for u, ms in self._open.items() if ms]
        for result in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(result, Exception):
                raise result

    async def run(self) -> None:
        """Renew leases until cancelled (a task of the gateway's lifespan)."""
        while True:
            await asyncio.sleep(self.renew_every)
            try:
                await self.renew()
            except (RedisUnavailable, RedisReplyError, OSError) as exc:
                self._warn(exc)

    async def release_all(self) -> None:
        """On shutdown: give back this process's slots now rather than a lease later."""
        for user, members in list(self._open.items()):
            for member in list(members):
                with contextlib.suppress(Exception):
                    await self.release(Slot(user, member))

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > 10:
            self._warned_at = now
            log.warning("stream slots: Redis unavailable (%s); counting this replica's streams only", exc)
