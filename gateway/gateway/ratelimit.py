"""Per-user rate limit shared by every gateway replica: GCRA in one Redis script call.

GCRA (the generic cell rate algorithm) keeps one number per user, the theoretical arrival
time (TAT) of the next request; a request is allowed when it does not arrive more than
`burst` emission intervals early. The script is the platform's one GCRA,
shared/shared/lua/gcra_reserve.lua (shared.GCRA_RESERVE_LUA, also behind shared.Pacer), asked
to reserve one slot without waiting. One EVALSHA per request on the gateway's pipelined
client, clock taken from Redis so replicas with drifting clocks agree.

Redis down: the limiter fails *soft*, not open and not closed. It logs (at most once per
fallback window), counts the event in a metric, and enforces the same limit per process for
`rate_limit_fallback_seconds` before trying Redis again. Failing closed would turn a
limiter outage into a platform outage for requests that do not need Redis at all (reading
a service's docs, an SSE stream already open); failing fully open would drop the protection
exactly when the platform is degraded. Per-process limits are looser by the replica count,
which is acceptable for a few seconds. Skipping Redis during the window also keeps each
request from paying a connect timeout.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import orjson
from prometheus_client import Counter

from gateway.pipelined_redis import PipelinedRedis, RedisReplyError, RedisUnavailable, Script
from gateway.settings import GatewaySettings
from shared import GCRA_RESERVE_LUA

log = logging.getLogger("gateway.ratelimit")

RATE_LIMITED = Counter("smartapp_gateway_rate_limited_total", "Requests refused by the rate limit")
LIMITER_FALLBACK = Counter(
    "smartapp_gateway_ratelimit_fallback_total", "Times the limiter fell back to in-process limits"
)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    remaining: int
    retry_after: float  # seconds until a request would be allowed (0 when allowed)
    reset: float  # seconds until the full burst is available again


class LocalGCRA:
    """The same algorithm in process memory: the fallback while Redis is unreachable."""

    MAX_USERS = 100_000

    def __init__(self, interval_us: int, burst: int) -> None:
        self.interval = interval_us
        self.burst = burst
        self._tat: dict[str, float] = {}

    def check(self, user: str) -> Decision:
        now = time.monotonic() * 1_000_000
        tat = max(self._tat.get(user, now), now)
        new_tat = tat + self.interval
        allow_at = new_tat - self.burst * self.interval
        if now < allow_at:
            return Decision(False, 0, (allow_at - now) / 1e6, (tat - now) / 1e6)
        if len(self._tat) >= self.MAX_USERS:
            self._tat.clear()
        self._tat[user] = new_tat
        return Decision(True, int((now - allow_at) // self.interval), 0.0, (new_tat - now) / 1e6)


class RateLimiter:
    def __init__(self, settings: GatewaySettings, client: PipelinedRedis) -> None:
        self.burst = settings.rate_limit_burst
        self.interval_us = max(1, round(60_000_000 / settings.rate_limit_per_minute))
        self.fallback_seconds = settings.rate_limit_fallback_seconds
        self._script = Script(client, GCRA_RESERVE_LUA)
        # The same arguments for every request, encoded once: one slot now, or a refusal.
        self._args = orjson.dumps(
            {"interval_us": self.interval_us, "burst": self.burst, "max_wait_us": 0, "count": 1}
        ).decode()
        self._local = LocalGCRA(self.interval_us, self.burst)
        self._redis_down_until = 0.0
        window = math.ceil(self.burst * self.interval_us / 1e6)
        self._static_headers = [
            (b"ratelimit-limit", str(self.burst).encode()),
            (b"ratelimit-policy", f"{self.burst};w={window}".encode()),
        ]

    async def check(self, user: str) -> Decision:
        if self._redis_down_until and time.monotonic() < self._redis_down_until:
            decision = self._local.check(user)
        else:
            try:
                answer = orjson.loads(await self._script(f"gw:rl:{user}", self._args))
            except (RedisUnavailable, RedisReplyError, OSError, ValueError, TypeError) as exc:
                self._redis_down_until = time.monotonic() + self.fallback_seconds
                LIMITER_FALLBACK.inc()
                log.warning(
                    "rate limiter: Redis unavailable (%s); limiting per process for %.0f s",
                    type(exc).__name__,
                    self.fallback_seconds,
                )
                decision = self._local.check(user)
            else:
                self._redis_down_until = 0.0
                decision = Decision(
                    answer["ok"], int(answer["remaining"]), answer["wait_us"] / 1e6, answer["reset_us"] / 1e6
                )
        if not decision.allowed:
            RATE_LIMITED.inc()
        return decision

    def headers(self, decision: Decision) -> list[tuple[bytes, bytes]]:
        """RateLimit-* fields (draft-ietf-httpapi-ratelimit-headers), and Retry-After on refusal."""
        out = [
            *self._static_headers,
            (b"ratelimit-remaining", str(decision.remaining).encode()),
            (b"ratelimit-reset", str(math.ceil(decision.reset)).encode()),
        ]
        if not decision.allowed:
            out.append((b"retry-after", str(max(1, math.ceil(decision.retry_after))).encode()))
        return out
