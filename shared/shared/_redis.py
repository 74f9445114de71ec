"""Redis clients: one per process (and one more for the cache when it has a Redis of its own)."""

from __future__ import annotations

from typing import Annotated, Any

import redis
import redis.asyncio as aioredis
from fastapi import Depends, Request
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared._settings import BaseServiceSettings


def _client_kwargs(settings: BaseServiceSettings) -> dict[str, Any]:
    # Fail fast when Redis is down so callers answer 503 within seconds instead of hanging.
    return {
        "socket_connect_timeout": 1.0,
        "socket_timeout": settings.redis_socket_timeout,
        "health_check_interval": 15,
        "retry": Retry(NoBackoff(), 1),
    }


def create_async_redis(settings: BaseServiceSettings, url: str | None = None) -> aioredis.Redis:
    """A client of the platform's Redis, or of `url` (the cache's own, CACHE_REDIS_URL)."""
    # A burst of more concurrent requests than connections waits for a free one (at most the
    # socket timeout) instead of failing at once with 503: 400 clients submitting at the same
    # moment through the gateway (its pool holds 256 upstream connections) used to get 503s.
    pool = aioredis.BlockingConnectionPool.from_url(
        url or settings.redis_url,
        max_connections=200,
        timeout=settings.redis_socket_timeout,
        **_client_kwargs(settings),
    )
    return aioredis.Redis.from_pool(pool)


def create_sync_redis(settings: BaseServiceSettings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, **_client_kwargs(settings))


async def get_redis(request: Request) -> aioredis.Redis:
    client: aioredis.Redis = request.app.state.redis
    return client


RedisDep = Annotated[aioredis.Redis, Depends(get_redis)]
