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

import orjson
from prometheus_client import Counter, Gauge

from gateway.pipelined_redis import PipelinedRedis, RedisReplyError, RedisUnavailable, Script, pack
from gateway.settings import GatewaySettings
from shared import read_lua

log = logging.getLogger("gateway.streams")

STREAMS_OPEN = Gauge("smartapp_gateway_streams_open", "Event streams open through this gateway process")
STREAMS_REFUSED = Counter(
    "smartapp_gateway_streams_refused_total", "Event streams refused: the user had MAX_STREAMS_PER_USER open"
)

ACQUIRE_LUA = read_lua("gateway", "stream_acquire.lua")
RENEW_LUA = read_lua("gateway", "stream_renew.lua")


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
        self._client = client
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
            args = {"cap": self.cap, "lease_ms": self.lease_ms, "member": member}
            opened, _ = await self._acquire(slots_key(user), orjson.dumps(args))
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
            reply = await self._client.execute(pack("ZREM", slots_key(slot.user), slot.member))
            if isinstance(reply, Exception):
                raise RedisReplyError(str(reply))
        except (RedisUnavailable, RedisReplyError, OSError) as exc:
            self._warn(exc)  # the lease runs out instead

    async def renew(self) -> None:
        """Extend the lease of every stream this process has open (pipelined: one write)."""
        calls = [
            self._renew(slots_key(u), orjson.dumps({"lease_ms": self.lease_ms, "members": sorted(ms)}))
            for u, ms in self._open.items()
            if ms
        ]
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
