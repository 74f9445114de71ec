"""Redis clients (one per process) and the per-user JSON cache."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

import orjson
import redis
import redis.asyncio as aioredis
from fastapi import Depends, Request
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared._errors import Unprocessable
from shared._settings import BaseServiceSettings

CACHE_KEY_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,200}$")
MAX_CACHE_VALUE_BYTES = 1_000_000
MAX_CACHE_TTL = 30 * 24 * 3600


def _client_kwargs(settings: BaseServiceSettings) -> dict[str, Any]:
    # Fail fast when Redis is down so callers answer 503 within seconds instead of hanging.
    return {
        "socket_connect_timeout": 1.0,
        "socket_timeout": settings.redis_socket_timeout,
        "health_check_interval": 15,
        "retry": Retry(NoBackoff(), 1),
    }


def create_async_redis(settings: BaseServiceSettings) -> aioredis.Redis:
    return aioredis.Redis.from_url(settings.redis_url, max_connections=200, **_client_kwargs(settings))


def create_sync_redis(settings: BaseServiceSettings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, **_client_kwargs(settings))


async def get_redis(request: Request) -> aioredis.Redis:
    client: aioredis.Redis = request.app.state.redis
    return client


RedisDep = Annotated[aioredis.Redis, Depends(get_redis)]


def cache_key(owner: str, key: str) -> str:
    """The Redis key of a user's cache entry; owners are quoted so ':' cannot cross namespaces."""
    if not CACHE_KEY_RE.fullmatch(key):
        raise Unprocessable(
            "Cache keys are 1-200 characters of letters, digits and . _ : -", code="invalid_key"
        )
    return f"cache:{quote(owner, safe='')}:{key}"


class Cache:
    """JSON values with a TTL, each user in a namespace of their own.

    Internal records live under other prefixes (t:, celery-task-meta-, ...): every key this
    class touches starts with 'cache:', so no cache call can reach them.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def get(self, owner: str, key: str) -> tuple[Any, int | None] | None:
        rkey = cache_key(owner, key)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(rkey)
            pipe.ttl(rkey)
            raw, ttl = await pipe.execute()
        if raw is None:
            return None
        return orjson.loads(raw), (ttl if ttl >= 0 else None)

    async def set(self, owner: str, key: str, value: Any, ttl: int | None) -> None:
        raw = orjson.dumps(value)
        if len(raw) > MAX_CACHE_VALUE_BYTES:
            raise Unprocessable(
                f"Cache values are at most {MAX_CACHE_VALUE_BYTES} bytes of JSON.", code="value_too_large"
            )
        await self.client.set(cache_key(owner, key), raw, ex=ttl)

    async def delete(self, owner: str, key: str) -> bool:
        return bool(await self.client.delete(cache_key(owner, key)))
