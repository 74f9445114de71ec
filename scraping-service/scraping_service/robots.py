"""robots.txt, fetched once per origin and cached in Redis for every worker.

RFC 9309 rules we follow: a 4xx for robots.txt means no rules (crawl allowed); a 5xx or an
unreachable server means assume complete disallow for now (cached briefly, then retried);
robots.txt is cached for at most 24 hours and only its first 500 KiB are parsed.
Matching and Crawl-delay come from urllib.robotparser.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.robotparser import RobotFileParser

import orjson
from redis.asyncio import Redis

from shared import origin_of

__all__ = ["RobotsCache", "RobotsDecision", "RobotsFetch", "crawl_delay"]

log = logging.getLogger(__name__)

KEY_PREFIX = "scrape:robots:"
MAX_ROBOTS_BYTES = 500 * 1024

# (status code, body text) for GET <origin>/robots.txt; raise OSError when unreachable.
RobotsFetch = Callable[[str], Awaitable[tuple[int, str]]]


@dataclass(frozen=True, slots=True)
class RobotsDecision:
    allowed: bool
    crawl_delay: float | None
    robots_url: str
    source: str  # "rules", "no-robots" (4xx), "unreachable" (5xx / network)


def crawl_delay(body: str, user_agent: str) -> float | None:
    """Crawl-delay for user_agent, fractions included (urllib.robotparser reads integers only)."""
    token = user_agent.split("/")[0].strip().lower()
    groups: list[tuple[list[str], float | None]] = []
    agents: list[str] = []
    delay: float | None = None
    in_rules = False
    for raw in body.splitlines():
        line = raw.split("#", 1)[0].strip()
        if ":" not in line:
            continue
        field, _, value = line.partition(":")
        field, value = field.strip().lower(), value.strip()
        if field == "user-agent":
            if in_rules:
                groups.append((agents, delay))
                agents, delay, in_rules = [], None, False
            agents.append(value.lower())
        elif agents:
            in_rules = True
            if field == "crawl-delay":
                try:
                    delay = float(value)
                except ValueError:
                    continue
    if agents:
        groups.append((agents, delay))
    fallback: float | None = None
    for names, group_delay in groups:
        if any(name != "*" and name in token for name in names):
            return group_delay
        if "*" in names and fallback is None:
            fallback = group_delay
    return fallback


class RobotsCache:
    def __init__(
        self,
        redis: Redis,
        fetch: RobotsFetch,
        user_agent: str,
        *,
        ttl_seconds: int = 24 * 3600,
        error_ttl_seconds: int = 300,
    ) -> None:
        self._redis = redis
        self._fetch = fetch
        self.user_agent = user_agent
        self.ttl_seconds = ttl_seconds
        self.error_ttl_seconds = error_ttl_seconds

    async def _load(self, origin: str) -> dict[str, str]:
        key = KEY_PREFIX + origin
        cached = await self._redis.get(key)
        if cached is not None:
            loaded: dict[str, str] = orjson.loads(cached)
            return loaded
        robots_url = origin + "/robots.txt"
        try:
            status, body = await self._fetch(robots_url)
        except OSError as exc:
            log.info("robots.txt at %s unreachable (%s); treating as disallow", origin, exc)
            status, body = 599, ""
        if 200 <= status < 300:
            entry = {"state": "rules", "body": body[:MAX_ROBOTS_BYTES]}
            ttl = self.ttl_seconds
        elif 400 <= status < 500:
            entry = {"state": "no-robots", "body": ""}
            ttl = self.ttl_seconds
        else:
            entry = {"state": "unreachable", "body": ""}
            ttl = self.error_ttl_seconds
        await self._redis.set(key, orjson.dumps(entry), ex=ttl)
        return entry

    async def check(self, url: str) -> RobotsDecision:
        origin = origin_of(url)
        robots_url = origin + "/robots.txt"
        entry = await self._load(origin)
        state = entry["state"]
        if state == "no-robots":
            return RobotsDecision(True, None, robots_url, state)
        if state == "unreachable":
            return RobotsDecision(False, None, robots_url, state)
        parser = RobotFileParser(robots_url)
        parser.parse(entry["body"].splitlines())
        allowed = parser.can_fetch(self.user_agent, url)
        delay = crawl_delay(entry["body"], self.user_agent)
        if delay is not None and not 0 <= delay <= 3600:
            delay = None  # nonsense values are ignored rather than stalling the host forever
        return RobotsDecision(allowed, delay, robots_url, state)
