"""The proxy: a pure ASGI handler in front of one pooled aiohttp session.

The hot path avoids framework layers on purpose (no Request objects, no routing, no
dependency injection): each proxied request costs a header pass, a token check (usually a
dict hit), one Redis script call and the upstream exchange. Bodies stream in both directions;
small ones are handed over whole because one send beats several.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from starlette.types import Receive, Scope, Send
from yarl import URL

from gateway.errors import (
    BadGateway,
    GatewayTimeout,
    HeadersTooLarge,
    RequestTimeout,
    TooManyStreams,
    send_error,
)
from gateway.headers import (
    REQUEST_DROP,
    SPOOFABLE_PREFIXES,
    TRUSTED_FORWARDING,
    add_forwarding,
    declared_length,
    response_head,
    upstream_url,
)
from gateway.identity import Identity
from gateway.ratelimit import Decision, RateLimiter
from gateway.routing import Route, RoutingTable, Service
from gateway.settings import GatewaySettings
from gateway.streams import Slot, StreamSlots
from shared import (
    AppError,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
)

log = logging.getLogger("gateway.proxy")

BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
BUFFER_BELOW = 256 * 1024  # request bodies up to this size are read whole, then sent
SMALL_RESPONSE = 1024 * 1024  # responses with a Content-Length up to this are read whole
SERVICE_TITLES = {
    Service.TASKS: "task service",
    Service.SCRAPING: "scraping service",
    Service.NOTIFICATIONS: "notification service",
}


class UpstreamAborted(Exception):
    """A response already under way cannot be finished; raising makes uvicorn drop the connection."""


class _ClientGone(Exception):
    pass


@dataclass
class Upstreams:
    """Clients made in the lifespan, reached by the proxy (set before the first request)."""

    session: aiohttp.ClientSession | None = None
    # Event streams hold their connection for minutes: they get a session of their own, so
    # they can never take the connections that ordinary requests wait for.
    stream_session: aiohttp.ClientSession | None = None
    limiter: RateLimiter | None = None
    streams: StreamSlots | None = None


class Proxy:
    """ASGI app for every path under the public prefix."""

    def __init__(
        self, settings: GatewaySettings, table: RoutingTable, identity: Identity, upstreams: Upstreams
    ) -> None:
        self.table = table
        self.identity = identity
        self.upstreams = upstreams
        self.deadline = settings.request_deadline_seconds
        self.trust_forwarded = settings.trust_forwarded_headers
        self.rate_limit = settings.rate_limit_enabled
        self.max_header_bytes = settings.max_header_bytes
        self.max_streams = settings.max_streams_per_user
        self.stream_max_seconds = settings.stream_max_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = self.table.match(scope["path"])
        if matched is None:
            await send_error(send, NotFound("There is no such path."))
            return
        route, label = matched
        scope["route"] = label  # read by the metrics middleware
        extra: list[tuple[bytes, bytes]] = []
        try:
            await self._handle(scope, receive, send, route, extra)
        except AppError as exc:
            await send_error(send, exc, extra)
        except _ClientGone:
            pass  # nobody is left to answer

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, route: Route, extra: list[tuple[bytes, bytes]]
    ) -> None:
        headers, authorization, content_length, has_te, host, forwarded = self._request_head(scope)
        client = scope.get("client")
        client_ip = client[0] if client else ""
        stream = self.table.is_stream(scope["path"])
        sub: str | None = None
        if authorization is None and not stream and self.table.is_public(scope["method"], scope["path"]):
            caller = f"ip:{client_ip}"  # anonymous callers share a budget per address
        else:
            principal = await self.identity.authenticate(authorization)
            self.identity.authorize(principal, route.scope)
            sub = principal.sub
            caller = f"u:{sub}"

        length = None if content_length is None else declared_length(content_length, route.max_body)

        limiter = self.upstreams.limiter
        if self.rate_limit and limiter is not None:
            decision: Decision = await limiter.check(caller)
            extra.extend(limiter.headers(decision))
            if not decision.allowed:
                raise TooManyRequests("Too many requests; slow down.")

        add_forwarding(headers, forwarded, host, client_ip, scope["scheme"])

        # The body: none, whole, or streamed with a running count against the limit.
        state = _BodyState(route.max_body)
        body: bytes | AsyncIterator[bytes] | None = None
        method = scope["method"]
        if length is not None or has_te:
            first = await receive()
            if first["type"] == "http.disconnect":
                return
            chunk = first.get("body", b"")
            state.count(len(chunk))
            if not first.get("more_body", False):
                body = chunk
            elif length is not None and length <= BUFFER_BELOW:
                try:
                    async with asyncio.timeout(self.deadline):
                        body = await state.read_all(chunk, receive)
                except TimeoutError:
                    raise RequestTimeout() from None
            else:
                if length is not None:
                    headers.append(("content-length", str(length)))
                body = state.stream(chunk, receive)
        elif method not in BODYLESS:
            body = b""

        url = upstream_url(route, scope)
        if not stream:
            await self._exchange(scope, receive, send, route, method, url, headers, body, state, extra)
            return
        assert sub is not None  # streams always authenticate
        slot = await self._stream_slot(sub)
        try:
            await self._exchange(scope, receive, send, route, method, url, headers, body, state, extra, True)
        finally:
            await self._release(slot)

    def _request_head(
        self, scope: Scope
    ) -> tuple[list[tuple[str, str]], str | None, bytes | None, bool, bytes, dict[bytes, bytes]]:
        """One pass over the request's header fields: (the fields to forward, Authorization,
        Content-Length, whether Transfer-Encoding was sent, Host, trusted X-Forwarded-* fields).

        Hop-by-hop, spoofable and rebuilt fields are dropped here; the few the gateway needs are
        kept aside. The sizes add up against MAX_HEADER_BYTES.
        """
        authorization: str | None = None
        content_length: bytes | None = None
        has_te = False
        host = b""
        connection: bytes | None = None
        forwarded: dict[bytes, bytes] = {}
        headers: list[tuple[str, str]] = []
        size = 0
        for name, value in scope["headers"]:
            size += len(value)
            if name in REQUEST_DROP or name.startswith(SPOOFABLE_PREFIXES):
                if name == b"content-length":
                    content_length = value
                elif name == b"host":
                    host = value
                elif name == b"transfer-encoding":
                    has_te = True
                elif name == b"connection":
                    connection = value
                elif self.trust_forwarded and name in TRUSTED_FORWARDING:
                    forwarded[name] = value
                continue
            if name == b"authorization":
                authorization = value.decode("latin-1")
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
        if size > self.max_header_bytes:
            # httptools sets no limit of its own, so the gateway keeps one for the services.
            raise HeadersTooLarge()
        if connection is not None:
            # Connection names further hop-by-hop fields for this message (RFC 9110 7.6.1).
            listed = {t.strip().lower() for t in connection.decode("latin-1").split(",")}
            headers = [h for h in headers if h[0] not in listed or h[0] == "authorization"]
        return headers, authorization, content_length, has_te, host, forwarded

    async def _stream_slot(self, sub: str) -> Slot | None:
        slots = self.upstreams.streams
        if slots is None:
            return None
        slot = await slots.acquire(sub)
        if slot is None:
            raise TooManyStreams(
                f"At most {self.max_streams} event streams may be open at once; close one first.",
                headers={"Retry-After": "5"},
            )
        return slot

    async def _release(self, slot: Slot | None) -> None:
        slots = self.upstreams.streams
        if slot is not None and slots is not None:
            # Shielded: a cancelled request (the client went away) still gives its slot back.
            await asyncio.shield(slots.release(slot))

    async def _exchange(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        method: str,
        url: URL,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterator[bytes] | None,
        state: _BodyState,
        extra: list[tuple[bytes, bytes]],
        stream: bool = False,
    ) -> None:
        session = self.upstreams.stream_session if stream else self.upstreams.session
        if session is None:
            raise ServiceUnavailable("The gateway is starting; try again shortly.")
        started = False
        try:
            async with asyncio.timeout(self.deadline) as timer:
                resp = await session.request(method, url, headers=headers, data=body, allow_redirects=False)
                try:
                    start = {
                        "type": "http.response.start",
                        "status": resp.status,
                        "headers": response_head(resp, extra),
                    }
                    if stream and resp.content_type == "text/event-stream":
                        # A stream lives until its client leaves or STREAM_MAX_SECONDS pass.
                        timer.reschedule(None)
                        started = True
                        await send(start)
                        await _stream_events(resp, receive, send, self.stream_max_seconds)
                        return
                    size = resp.content_length
                    if size is not None and size <= SMALL_RESPONSE:
                        data = await resp.read()
                        started = True
                        await send(start)
                        await send({"type": "http.response.body", "body": data})
                        return
                    started = True
                    await send(start)
                    async for chunk in resp.content.iter_any():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    await send({"type": "http.response.body", "body": b""})
                finally:
                    resp.release()
        except (TimeoutError, aiohttp.ClientError, _ClientGone, OSError) as exc:
            # An AppError (the gateway's own answer) is none of these and passes through.
            error = self._upstream_error(exc, route, state, started)
            if error is not None:
                raise error from None

    def _upstream_error(
        self, exc: BaseException, route: Route, state: _BodyState, started: bool
    ) -> Exception | None:
        """What a failed exchange becomes: the client's error, a dropped response once it has
        started (UpstreamAborted), or None when the client itself went away."""
        if state.too_large:
            return state.too_large_error()
        if isinstance(exc, TimeoutError):
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                return self._unavailable(route)
            if started:
                log.warning("upstream %s passed the deadline mid-response; dropping it", route.service)
                return UpstreamAborted(route.service)
            log.warning("upstream %s timed out after %.1f s", route.service, self.deadline)
            return GatewayTimeout(
                f"The {SERVICE_TITLES[route.service]} did not answer within {self.deadline:g} s."
            )
        if state.client_gone or isinstance(exc, _ClientGone):
            return None
        if started:
            log.warning("upstream %s failed mid-response: %s", route.service, type(exc).__name__)
            return UpstreamAborted(route.service)
        if isinstance(exc, aiohttp.ClientConnectorError):
            log.warning("upstream %s refused the connection", route.service)
            return self._unavailable(route)
        log.warning("upstream %s failed: %s", route.service, type(exc).__name__)
        return BadGateway(f"The {SERVICE_TITLES[route.service]} answered badly; try again.")

    @staticmethod
    def _unavailable(route: Route) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"The {SERVICE_TITLES[route.service]} is unavailable; try again shortly.",
            code="upstream_unavailable",
        )


class _BodyState:
    """Counts request body bytes as they pass, so a large body is refused without being held."""

    __slots__ = ("client_gone", "limit", "received", "too_large")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.received = 0
        self.too_large = False
        self.client_gone = False

    def count(self, n: int) -> None:
        self.received += n
        if self.received > self.limit:
            self.too_large = True
            raise self.too_large_error()

    def too_large_error(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"The request body is larger than {self.limit} bytes.")

    async def _next(self, receive: Receive) -> tuple[bytes, bool]:
        message = await receive()
        if message["type"] == "http.disconnect":
            self.client_gone = True
            raise _ClientGone
        chunk: bytes = message.get("body", b"")
        self.count(len(chunk))
        return chunk, bool(message.get("more_body", False))

    async def read_all(self, first: bytes, receive: Receive) -> bytes:
        parts = [first]
        more = True
        while more:
            chunk, more = await self._next(receive)
            parts.append(chunk)
        return b"".join(parts)

    async def stream(self, first: bytes, receive: Receive) -> AsyncIterator[bytes]:
        if first:
            yield first
        more = True
        while more:
            chunk, more = await self._next(receive)
            if chunk:
                yield chunk


async def _stream_events(
    resp: aiohttp.ClientResponse, receive: Receive, send: Send, max_seconds: float
) -> None:
    """Relay an event stream chunk by chunk until either side goes away or `max_seconds` pass.

    At the time limit the response ends cleanly (the last chunk of a chunked body), so an
    EventSource reconnects on its own, sending Last-Event-ID.
    """

    async def pump() -> None:
        with contextlib.suppress(aiohttp.ClientError):
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def watch() -> None:
        # uvicorn's send() is silent after a disconnect, so the disconnect must be read.
        while (await receive())["type"] != "http.disconnect":
            pass

    pumping = asyncio.ensure_future(pump())
    watching = asyncio.ensure_future(watch())
    try:
        done, _ = await asyncio.wait(
            (pumping, watching), timeout=max_seconds, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in (pumping, watching):
            task.cancel()
        await asyncio.gather(pumping, watching, return_exceptions=True)
    if not done:
        await send({"type": "http.response.body", "body": b""})
        return
    if pumping.done() and not pumping.cancelled() and pumping.exception() is not None:
        raise UpstreamAborted("event stream") from pumping.exception()
