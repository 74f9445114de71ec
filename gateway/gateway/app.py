"""The gateway ASGI app: a pure-ASGI proxy for the API prefix, a small FastAPI app for the rest.

    metrics + request id  ->  CORS (when configured)  ->  /smart_application/tasks/... -> Proxy
                                                       ->  /console/... -> static files (console/)
                                                       ->  anything else (health, ready,
                                                           metrics, docs, lifespan) -> FastAPI

The proxy does not go through FastAPI's routing, request objects and exception middleware:
measured on this machine, a bare FastAPI pass-through proxy spends more CPU per request than
this gateway with auth, rate limiting and metrics (gateway/bench/bench_gateway.py, README).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import aiohttp
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.console import Console, is_console_path
from gateway.errors import send_error
from gateway.identity import Identity
from gateway.openapi import OpenAPIMerger
from gateway.operations import check_platform, router
from gateway.pipelined_redis import PipelinedRedis
from gateway.proxy import Proxy, Upstreams
from gateway.ratelimit import RateLimiter
from gateway.routing import RoutingTable
from gateway.settings import GatewaySettings
from gateway.streams import StreamSlots
from shared import (
    API_PREFIX,
    AppError,
    CachedReadiness,
    ObservabilityMiddleware,
    check_headers,
    configure_logging,
    install_error_handlers,
    tune_gc,
)

EXPOSED_HEADERS = [
    "X-Request-ID",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
    "Location",
]


def make_session(settings: GatewaySettings, *, limit: int | None = None) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=settings.upstream_pool_size if limit is None else limit,
        limit_per_host=0,
        keepalive_timeout=settings.upstream_keepalive_seconds,
        ttl_dns_cache=60,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # The proxy's own deadline bounds each exchange; only the connect step has its own limit.
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=settings.upstream_connect_timeout_seconds),
        # One session serves every user: it must never remember a cookie from one for another.
        cookie_jar=aiohttp.DummyCookieJar(),
        # Bodies pass through byte for byte, Content-Encoding and all.
        auto_decompress=False,
        # Send only what the client sent; no User-Agent, Accept or Accept-Encoding of our own.
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        trust_env=False,
    )


class Gateway:
    """The ASGI callable uvicorn serves (`gateway.app:create_app`, factory)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.table = RoutingTable(settings)
        self.upstreams = Upstreams()
        self.identity = Identity(settings)
        self.proxy = Proxy(settings, self.table, self.identity, self.upstreams)
        self.ops = self._ops_app()
        self.console = Console()  # the web console's static files, read once here
        self._prefix = API_PREFIX
        app: ASGIApp = self._dispatch
        if settings.cors_origin_list:
            app = CORSMiddleware(
                app,
                allow_origins=settings.cors_origin_list,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "Idempotency-Key",
                    "X-Request-ID",
                    "Last-Event-ID",
                ],
                allow_credentials=settings.cors_allow_credentials,
                expose_headers=EXPOSED_HEADERS,
                max_age=600,
            )
        self.app = ObservabilityMiddleware(app, service=settings.service_name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # One Authorization header, no oversized value: before routing, rate limiting or
            # auth, so the user charged and the user served can never differ.
            try:
                check_headers(scope["headers"])
            except AppError as exc:
                await send_error(send, exc)
                return
        if scope["type"] == "http" and scope["path"].startswith(self._prefix):
            await self.proxy(scope, receive, send)
        elif scope["type"] == "http" and is_console_path(scope["path"]):
            await self.console(scope, receive, send)
        else:
            await self.ops(scope, receive, send)

    def _ops_app(self) -> FastAPI:
        settings = self.settings
        upstreams = self.upstreams

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            async with AsyncExitStack() as stack:
                redis = PipelinedRedis(
                    settings.redis_url,
                    timeout=settings.rate_limit_redis_timeout_seconds,
                    connect_timeout=settings.rate_limit_redis_timeout_seconds,
                )
                stack.push_async_callback(redis.aclose)
                app.state.redis = redis
                session = make_session(settings)
                stack.push_async_callback(session.close)
                upstreams.session = session
                upstreams.limiter = RateLimiter(settings, redis)
                # No pool limit for streams: MAX_STREAMS_PER_USER bounds each user, and a
                # stream waiting for a pooled connection would only hold its slot longer.
                stream_session = make_session(settings, limit=0)
                stack.push_async_callback(stream_session.close)
                upstreams.stream_session = stream_session
                slots = StreamSlots(settings, redis)
                upstreams.streams = slots
                renewing = asyncio.create_task(slots.run(), name="stream-leases")
                tune_gc()  # start-up is done (shared.tune_gc)
                try:
                    yield
                finally:
                    renewing.cancel()
                    await asyncio.gather(renewing, return_exceptions=True)
                    await slots.release_all()
                    upstreams.session = None
                    upstreams.stream_session = None
                    upstreams.limiter = None
                    upstreams.streams = None

        ops = FastAPI(
            title="smart_application gateway",
            lifespan=lifespan,
            docs_url=None,
            redoc_url=None,
            openapi_url=None,
        )
        ops.state.settings = settings
        ops.state.upstreams = upstreams
        ops.state.services = self.table.services()
        ops.state.openapi = OpenAPIMerger(
            self.table.services(), lambda: upstreams.session, settings.openapi_cache_seconds
        )
        ops.state.readiness = CachedReadiness(lambda: check_platform(ops), settings.ready_cache_seconds)
        install_error_handlers(ops)
        ops.include_router(router)
        return ops


def create_app(settings: GatewaySettings | None = None) -> Gateway:
    settings = settings or GatewaySettings()
    configure_logging(settings.service_name, settings.log_level)
    return Gateway(settings)
