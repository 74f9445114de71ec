"""The per-user JSON cache: every entry expires, and each user has a quota of keys and bytes.

Layout (in the cache's Redis, `CACHE_REDIS_URL`, by default the platform's own):
`cache:{owner}:{key}` the value; `cache-quota:{owner}:index` a zset of the user's keys by
expiry; `cache-quota:{owner}:sizes` a hash of their sizes plus their sum under `#bytes`.
Owners are percent-quoted, so no owner's keys can reach another's or any internal record.

Each write and delete is one Lua script (lua/cache_*.lua), so the quota check and the write
are one atomic step however many API replicas there are, and expired entries are forgotten
lazily by the next write, so the counts are exact without a sweeper. If the cache's Redis
evicts a value early (allkeys-lru), its share stays counted until its TTL would have passed:
the quota errs on the side of the platform.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import quote

import orjson
import redis.asyncio as aioredis

from shared._errors import PayloadTooLarge, Unprocessable

CACHE_KEY_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,200}$")


def _lua(name: str) -> str:
    return (resources.files("shared") / "lua" / name).read_text(encoding="utf-8")


def _script(name: str) -> str:
    """The script in `name`, its shebang (Redis 7 flags) first, the shared prune helpers next."""
    shebang, _, body = _lua(name).partition("\n")
    if not shebang.startswith("#!lua"):
        raise ValueError(f"{name} must start with a #!lua line")
    return f"{shebang}\n{_lua('cache_prune.lua')}{body}"


# Read once at import; redis-py loads each into Redis once (EVALSHA, SCRIPT LOAD on a miss).
_PUT_LUA = _script("cache_put.lua")
_DELETE_LUA = _script("cache_delete.lua")


@dataclass(frozen=True, slots=True)
class CacheLimits:
    """API.md "Fair share": every entry expires; values and each user's total are bounded."""

    default_ttl: int = 86_400
    max_ttl: int = 30 * 24 * 3600
    max_value_bytes: int = 1024 * 1024
    max_keys_per_user: int = 10_000
    max_bytes_per_user: int = 64 * 1024 * 1024


def cache_key(owner: str, key: str) -> str:
    """The Redis key of a user's cache entry; owners are quoted so ':' cannot cross namespaces."""
    if not CACHE_KEY_RE.fullmatch(key):
        raise Unprocessable(
            "Cache keys are 1-200 characters of letters, digits and . _ : -", code="invalid_key"
        )
    return f"cache:{quote(owner, safe='')}:{key}"


def _quota_keys(owner: str) -> list[str]:
    prefix = f"cache-quota:{quote(owner, safe='')}"
    return [f"{prefix}:index", f"{prefix}:sizes"]


class Cache:
    """JSON values with a bounded TTL, each user in a namespace of their own, within a quota.

    Internal records live under other prefixes (t:, celery-task-meta-, ...): every key this
    class touches starts with 'cache:' or 'cache-quota:', so no cache call can reach them.
    """

    def __init__(self, client: aioredis.Redis, limits: CacheLimits | None = None) -> None:
        self.client = client
        self.limits = limits or CacheLimits()
        self._put = client.register_script(_PUT_LUA)
        self._delete = client.register_script(_DELETE_LUA)

    async def get(self, owner: str, key: str) -> tuple[Any, int | None] | None:
        rkey = cache_key(owner, key)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(rkey)
            pipe.ttl(rkey)
            raw, ttl = await pipe.execute()
        if raw is None:
            return None
        return orjson.loads(raw), (ttl if ttl >= 0 else None)

    def ttl_for(self, ttl: int | None) -> int:
        """The TTL a write gets: the default when none is given; 422 past the maximum."""
        if ttl is None:
            return self.limits.default_ttl
        if ttl < 1 or ttl > self.limits.max_ttl:
            raise Unprocessable(
                f"ttl is 1 to {self.limits.max_ttl} seconds (CACHE_MAX_TTL).", code="invalid_ttl"
            )
        return ttl

    async def set(self, owner: str, key: str, value: Any, ttl: int | None) -> int:
        """Store value; return the TTL it got. 413 past the value size or the user's quota."""
        seconds = self.ttl_for(ttl)
        rkey = cache_key(owner, key)
        raw = orjson.dumps(value)
        if len(raw) > self.limits.max_value_bytes:
            raise PayloadTooLarge(
                f"Cache values are at most {self.limits.max_value_bytes} bytes of JSON "
                "(CACHE_MAX_VALUE_BYTES).",
                code="value_too_large",
            )
        args = {
            "member": key,
            "ttl_ms": seconds * 1000,
            "max_keys": self.limits.max_keys_per_user,
            "max_bytes": self.limits.max_bytes_per_user,
        }
        answer = orjson.loads(
            await self._put(keys=[*_quota_keys(owner), rkey], args=[orjson.dumps(args), raw])
        )
        if not answer["ok"]:
            if answer["limit"] == "keys":
                what = f"{answer['max']} keys (CACHE_MAX_KEYS_PER_USER)"
            else:
                what = f"{answer['max']} bytes (CACHE_MAX_BYTES_PER_USER)"
            raise PayloadTooLarge(
                f"Your cache holds at most {what}; delete keys or let them expire first.",
                code="cache_quota_exceeded",
            )
        return seconds

    async def delete(self, owner: str, key: str) -> bool:
        rkey = cache_key(owner, key)
        args = orjson.dumps({"member": key})
        answer = orjson.loads(await self._delete(keys=[*_quota_keys(owner), rkey], args=[args]))
        return bool(answer["deleted"])
