"""Redis clients: one per process (and one more for the cache when it has a Redis of its own),
and Calls: one round trip written once, run on either client.

A Call is the command (or a Lua script and its argument) and how its reply reads, with no I/O:
the knowledge of a store (keys, script arguments, decoding) is written once, and `run` (a sync
client: Celery's pool processes) or `arun` (an async client: the APIs) does the round trip. Why
not one async store driven from the workers through the worker runtime: a record call made so
costs about 135 µs of CPU against 25 µs on the sync client (measured), and a task makes two.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

import redis
import redis.asyncio as aioredis
from fastapi import Depends, Request
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
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


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Lua:
    """A Lua script, run by its hash (EVALSHA) and sent whole only when Redis does not know it."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest())


def _same(reply: Any) -> Any:
    return reply


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One round trip: a command's arguments (a script's, when `script` is set) and how the reply
    reads."""

    args: tuple[Any, ...]
    read: Callable[[Any], T] = _same
    script: Lua | None = None


def run(client: redis.Redis, call: Call[T]) -> T:
    """Make the call on a sync client."""
    if call.script is None:
        return call.read(client.execute_command(*call.args))
    try:
        reply = client.execute_command("EVALSHA", call.script.sha, 0, *call.args)
    except NoScriptError:  # a Redis restarted (or flushed its scripts) since
        client.script_load(call.script.source)
        reply = client.execute_command("EVALSHA", call.script.sha, 0, *call.args)
    return call.read(reply)


# What the clients' Retry(NoBackoff(), 1) retries once (redis-py's Retry defaults).
_RETRYABLE = (RedisConnectionError, RedisTimeoutError, socket.timeout)


class Caller:
    """`run` for the workers' hot path: each thread makes its calls on a connection of its own,
    taken from the client's pool once and kept.

    The same round trip as `client.execute_command` (health check, replies read by the
    client's response callbacks, a lost connection retried once as the client's Retry does),
    without what redis-py 8 adds around each command (a pool checkout and release, its retry
    and observability wrappers): 60 us of CPU against 125 us for a script call, measured on a
    busy machine; a task makes two (record_begin, task_end). A call interrupted (a soft time
    limit raised in the middle) leaves the connection closed, and the next call opens it again:
    it never reads the interrupted call's reply as its own.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._local = threading.local()

    def _send(self, args: tuple[Any, ...]) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.client.connection_pool.get_connection()
        try:
            conn.send_command(*args)
            return self.client.parse_response(conn, args[0])
        except _RETRYABLE:
            conn.disconnect()  # once more, on a new connection (the client's Retry(..., 1))
        except ResponseError:
            raise  # Redis answered with an error: its whole reply was read, the connection is in step
        except BaseException:
            # Interrupted between sending and reading (a soft time limit raised there): the reply
            # is still on the wire, and the next call must not read it as its own.
            conn.disconnect()
            raise
        conn.send_command(*args)
        return self.client.parse_response(conn, args[0])

    def __call__(self, call: Call[T]) -> T:
        if call.script is None:
            return call.read(self._send(call.args))
        try:
            reply = self._send(("EVALSHA", call.script.sha, 0, *call.args))
        except NoScriptError:  # a Redis restarted (or flushed its scripts) since
            self._send(("SCRIPT", "LOAD", call.script.source))
            reply = self._send(("EVALSHA", call.script.sha, 0, *call.args))
        return call.read(reply)


async def arun(client: aioredis.Redis, call: Call[T]) -> T:
    """Make the call on an async client."""
    if call.script is None:
        return call.read(await client.execute_command(*call.args))
    try:
        reply = await client.execute_command("EVALSHA", call.script.sha, 0, *call.args)
    except NoScriptError:
        await client.script_load(call.script.source)
        reply = await client.execute_command("EVALSHA", call.script.sha, 0, *call.args)
    return call.read(reply)
