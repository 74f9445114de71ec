"""One Redis pub/sub connection per process, fanned out in memory to every open event stream.

A connection per stream (redis-py's `client.pubsub()` in each request) takes a connection out
of the pool the ordinary requests use for as long as the stream lasts: measured on this
platform, 200 `task-events` streams of one user left another user's `GET /tasks/` 49 times in
50 with 503. Here a stream costs a bounded queue and a dict entry; the process subscribes to a
channel while at least one of its streams wants it (SUBSCRIBE/UNSUBSCRIBE on the one
connection), so Redis sends a process only the events of channels it is watching. A pattern
subscription (`t:ev:*`) would be simpler and would send every process every task's events.

Delivery is at most once, so each listener learns when it may have missed something: after
the connection is rebuilt (Redis restarted, a network cut) or when its queue overflowed (a
slow client), `get` answers `Signal.RESYNC` once, and the stream re-reads its state from
Redis. Streams also re-read on their keep-alive timeout, which bounds any gap left.

Why not redis-py's own reconnection: it re-subscribes silently, so a listener could never
know that messages were lost while the connection was down. This connection is made with no
retries, and every failure rebuilds it here and signals RESYNC.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from shared._settings import BaseServiceSettings

log = logging.getLogger("shared.pubsub")

# Subscribed for as long as the connection lives: a pub/sub connection with at least one
# subscription never has redis-py send a health-check PING that would read a reply off it.
_KEEPER_CHANNEL = b"smartapp:hub"
CLIENT_NAME = "smartapp-events"  # in CLIENT LIST
QUEUE_SIZE = 256
READY_TIMEOUT_SECONDS = 5.0
_READ_SECONDS = 5.0
_RECONNECT_SECONDS = 1.0


# The OpenAPI entry of both stream routes for the gateway's refusal (gateway/gateway/streams.py).
STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {
        "description": "`too_many_streams`: you have MAX_STREAMS_PER_USER (20) event streams open "
        "already, counted by the gateway across its replicas. A stream also ends after "
        "STREAM_MAX_SECONDS (600); reconnect, with Last-Event-ID for the inbox."
    }
}


class Signal(enum.Enum):
    TIMEOUT = "timeout"  # nothing arrived within the wait
    RESYNC = "resync"  # messages may have been lost: read the state again


class Listener:
    """One stream's view of one channel: its messages, in order, or a signal."""

    __slots__ = ("_lost", "_queue", "channel")

    def __init__(self, channel: bytes) -> None:
        self.channel = channel
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_SIZE)
        self._lost = False

    def _put(self, data: bytes) -> None:
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            self._lost = True

    def _resync(self) -> None:
        self._lost = True
        if self._queue.empty():
            self._queue.put_nowait(b"")  # wakes a waiting `get`, which then answers RESYNC

    async def get(self, wait: float) -> bytes | Signal:
        """The next message; RESYNC once after a possible loss; TIMEOUT after `wait` seconds."""
        if self._lost:
            self._drain()
            return Signal.RESYNC
        try:
            async with asyncio.timeout(wait):
                data = await self._queue.get()
        except TimeoutError:
            return Signal.TIMEOUT
        if self._lost:
            self._drain()
            return Signal.RESYNC
        return data

    def _drain(self) -> None:
        self._lost = False
        while not self._queue.empty():
            self._queue.get_nowait()


class _Channel:
    __slots__ = ("listeners", "ready")

    def __init__(self) -> None:
        self.listeners: set[Listener] = set()
        self.ready = asyncio.Event()


class EventHub:
    """The process's one subscriber; started on first use, closed in the lifespan."""

    def __init__(self, settings: BaseServiceSettings) -> None:
        self._url = settings.redis_url
        self._socket_timeout = settings.redis_socket_timeout
        self._channels: dict[bytes, _Channel] = {}
        self._client: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._reconnected = False
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    @contextlib.asynccontextmanager
    async def listen(self, channel: str) -> AsyncIterator[Listener]:
        """Subscribed when this returns: whatever is published from then on reaches the listener.

        Read the state a stream starts from *after* entering, so nothing falls in between.
        """
        name = channel.encode()
        listener = Listener(name)
        entry = self._channels.get(name)
        if entry is None:
            entry = self._channels[name] = _Channel()
            entry.listeners.add(listener)
            self._ensure_reader()
            if self._connected.is_set():
                with contextlib.suppress(RedisError, OSError):
                    # On failure the reader rebuilds the connection and subscribes it then.
                    await self._pubsub.subscribe(name)
        else:
            entry.listeners.add(listener)
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                await entry.ready.wait()
            yield listener
        finally:
            entry.listeners.discard(listener)
            if not entry.listeners and self._channels.get(name) is entry:
                del self._channels[name]
                # Not awaited here: a stream ends by cancellation, which would cancel this too.
                task = asyncio.get_running_loop().create_task(self._unsubscribe(name))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _unsubscribe(self, name: bytes) -> None:
        # Checked and sent with no await in between that could let a new stream subscribe first.
        if name not in self._channels and self._connected.is_set():
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(name)

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            if self._closed:
                raise RuntimeError("the event hub is closed")
            self._reader = asyncio.create_task(self._run(), name="event-hub")

    async def _run(self) -> None:
        while not self._closed:
            try:
                await self._connect()
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event hub: Redis pub/sub failed (%s); reconnecting", type(exc).__name__)
            await self._disconnect()
            self._reconnected = True
            for entry in self._channels.values():
                entry.ready.clear()
            await asyncio.sleep(_RECONNECT_SECONDS)

    async def _connect(self) -> None:
        self._client = aioredis.Redis.from_url(
            self._url,
            socket_connect_timeout=1.0,
            socket_timeout=self._socket_timeout,
            health_check_interval=15,
            retry=Retry(NoBackoff(), 0),  # a failure comes to _run, which signals RESYNC
            max_connections=1,
            client_name=CLIENT_NAME,
        )
        self._pubsub = self._client.pubsub()
        sent = set(self._channels)
        await self._pubsub.subscribe(_KEEPER_CHANNEL, *sent)
        self._connected.set()
        late = set(self._channels) - sent  # streams that arrived while SUBSCRIBE was on its way
        if late:
            await self._pubsub.subscribe(*late)

    async def _disconnect(self) -> None:
        self._connected.clear()
        pubsub, client, self._pubsub, self._client = self._pubsub, self._client, None, None
        with contextlib.suppress(Exception):
            if pubsub is not None:
                await pubsub.aclose()
        with contextlib.suppress(Exception):
            if client is not None:
                await client.aclose()

    async def _read(self) -> None:
        while not self._closed:
            msg = await self._pubsub.get_message(timeout=_READ_SECONDS)
            if msg is None:
                continue
            kind, channel = msg["type"], msg["channel"]
            entry = self._channels.get(channel)
            if entry is None:
                continue
            if kind == "message":
                for listener in entry.listeners:
                    listener._put(msg["data"])
            elif kind == "subscribe" and not entry.ready.is_set():
                entry.ready.set()
                if self._reconnected:
                    # Whatever was published while the connection was down is lost.
                    for listener in entry.listeners:
                        listener._resync()

    async def aclose(self) -> None:
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self._disconnect()
