"""A minimal Redis client for the gateway's hot path: one connection, commands pipelined.

redis-py's asyncio client spends most of a call on its connection pool, per-command
timeouts and retries; measured here that was about a quarter of the gateway's CPU per
proxied request. Redis answers a connection's commands in order, so one connection can
carry every in-flight request's command: each caller appends a future to a queue, the
command bytes are written (coalesced once per loop iteration), and replies parsed by
hiredis resolve the futures in order.

Failure handling is deliberately blunt. Any connection error, or the oldest command going
unanswered past `timeout`, fails every pending command with `RedisUnavailable` and drops
the connection; the next command reconnects. Callers (the rate limiter) fall back on that.
Only what the gateway needs is here: EVALSHA with a fallback to EVAL, and PING.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections import deque
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url


class RedisUnavailable(ConnectionError):
    pass


class RedisReplyError(Exception):
    pass


def pack(*args: bytes | str | int) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: PipelinedRedis) -> None:
        self.owner = owner
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.owner._protocol is not self:
            return
        self.reader.feed(data)
        pending = self.owner._pending
        while (reply := self.reader.gets()) is not False:
            if not pending:
                self.owner._drop(RedisUnavailable("a reply nobody asked for"))
                return
            future = pending.popleft()[1]
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.owner._protocol is self:
            self.owner._drop(RedisUnavailable("connection lost"))


class PipelinedRedis:
    def __init__(self, url: str, *, timeout: float = 1.0, connect_timeout: float = 1.0) -> None:
        self._options = parse_url(url)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._protocol: _Protocol | None = None
        self._pending: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._outgoing: list[bytes] = []
        self._flush_scheduled = False
        self._connecting: asyncio.Lock | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed = False

    async def _connect(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None:
                return
            if self._closed:
                raise RedisUnavailable("client closed")
            loop = asyncio.get_running_loop()
            options = self._options
            cls = options.get("connection_class")
            try:
                async with asyncio.timeout(self.connect_timeout):
                    if cls is UnixDomainSocketConnection:
                        _, protocol = await loop.create_unix_connection(
                            lambda: _Protocol(self), options["path"]
                        )
                    else:
                        _, protocol = await loop.create_connection(
                            lambda: _Protocol(self),
                            options.get("host", "localhost"),
                            options.get("port", 6379),
                            ssl=ssl.create_default_context() if cls is SSLConnection else None,
                        )
            except (OSError, TimeoutError) as exc:
                raise RedisUnavailable(f"cannot connect: {type(exc).__name__}") from None
            self._protocol = protocol
            setup = []
            if options.get("password"):
                user = options.get("username")
                auth = ("AUTH", user, options["password"]) if user else ("AUTH", options["password"])
                setup.append(pack(*auth))
            if options.get("db"):
                setup.append(pack("SELECT", options["db"]))
            # Queued together before any await, so no other command can slip in between.
            replies = [self._send(command) for command in setup]
            for reply in replies:
                if isinstance(await reply, Exception):
                    self._drop(RedisUnavailable("setup refused"))
                    raise RedisUnavailable("Redis refused the connection setup (AUTH or SELECT)")

    def _send(self, command: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((time.monotonic() + self.timeout, future))
        self._outgoing.append(command)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        if self._watchdog is None:
            self._watchdog = loop.call_later(self.timeout, self._check_overdue)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None and self._outgoing:
            protocol.transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def _check_overdue(self) -> None:
        self._watchdog = None
        if not self._pending:
            return
        if self._pending[0][0] <= time.monotonic():
            self._drop(RedisUnavailable("Redis did not answer in time"))
            return
        delay = max(0.0, self._pending[0][0] - time.monotonic())
        self._watchdog = asyncio.get_running_loop().call_later(delay + 0.001, self._check_overdue)

    def _drop(self, exc: Exception) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abort()
        self._outgoing.clear()
        while self._pending:
            future = self._pending.popleft()[1]
            if not future.done():
                future.set_exception(exc)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    async def execute(self, command: bytes) -> Any:
        """Send one packed command; its reply (a ReplyError instance for an error reply)."""
        if self._protocol is None:
            await self._connect()
        return await self._send(command)

    async def ping(self) -> bool:
        return bool(await self.execute(pack("PING")) == b"PONG")

    async def aclose(self) -> None:
        self._closed = True
        self._drop(RedisUnavailable("client closed"))


class Script:
    """A Lua script run with EVALSHA, loaded with EVAL when Redis does not know it yet."""

    def __init__(self, client: PipelinedRedis, source: str) -> None:
        self.client = client
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source, usedforsecurity=False).hexdigest().encode()

    async def __call__(self, key: str, *args: bytes | int | str) -> Any:
        reply = await self.client.execute(pack(b"EVALSHA", self.sha, 1, key, *args))
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await self.client.execute(pack(b"EVAL", self.source, 1, key, *args))
        if isinstance(reply, Exception):
            raise RedisReplyError(str(reply))
        return reply
