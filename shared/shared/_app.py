"""The FastAPI app every service starts from: lifespan clients, errors, ids, health, metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from importlib import metadata
from typing import Any

from celery import Celery
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from kombu import Connection
from starlette.concurrency import run_in_threadpool

from shared._auth import TokenVerifier
from shared._errors import install_error_handlers
from shared._gc import tune_gc
from shared._logging import configure_logging
from shared._metrics import ObservabilityMiddleware, metrics_registry, render_metrics
from shared._publisher import close_publishers
from shared._pubsub import EventHub
from shared._ready import CachedReadiness
from shared._records import TaskRecords
from shared._redis import create_async_redis
from shared._settings import BaseServiceSettings
from shared._shape import RequestShapeMiddleware

log = logging.getLogger("shared.app")

ReadyCheck = Callable[[FastAPI], Awaitable[None]]
Hook = Callable[[FastAPI], Awaitable[None]]


async def check_redis(app: FastAPI) -> None:
    await app.state.redis.ping()


def _broker_ping(url: str) -> None:
    with Connection(url, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


async def check_rabbitmq(app: FastAPI) -> None:
    await run_in_threadpool(_broker_ping, app.state.settings.broker_url)


def _about(distribution: str) -> tuple[str, str]:
    """The version and the one-line description in the service's pyproject.toml (its metadata)."""
    try:
        meta = metadata.metadata(distribution)
    except metadata.PackageNotFoundError:
        return "0.0.0", ""
    return meta["Version"], meta["Summary"] or ""


def create_service_app(
    settings: BaseServiceSettings,
    *,
    routers: Sequence[APIRouter] = (),
    celery_app: Celery | None = None,
    ready_checks: dict[str, ReadyCheck] | None = None,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
) -> FastAPI:
    """Build a service app; its clients are made once, in the lifespan."""
    configure_logging(settings.service_name, settings.log_level)
    checks: dict[str, ReadyCheck] = {"redis": check_redis}
    if celery_app is not None:
        checks["rabbitmq"] = check_rabbitmq
    checks.update(ready_checks or {})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            client = create_async_redis(settings)
            stack.push_async_callback(client.aclose)
            app.state.redis = client
            app.state.records = TaskRecords(
                client, settings.result_expires_seconds, settings.failed_retention_days * 86400
            )
            # Event streams share one pub/sub connection, made on the first stream.
            app.state.events = EventHub(settings)
            stack.push_async_callback(app.state.events.aclose)
            for hook in on_startup:
                await hook(app)
            tune_gc()  # start-up is done: see shared._gc
            try:
                yield
            finally:
                for hook in on_shutdown:
                    await hook(app)
                if celery_app is not None:
                    celery_app.pool.force_close_all()
                    close_publishers()

    version, summary = _about(settings.service_name)
    app = FastAPI(
        title=f"smart_application {settings.service_name}",
        description=summary,
        version=version,
        lifespan=lifespan,
        # FastAPI's OpenTelemetry hooks are off: our metrics are Prometheus' (ObservabilityMiddleware),
        # and with them on FastAPI asks OpenTelemetry for its providers on every request (about
        # 3% of an API's CPU under load, for no exporter configured).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.verifier = TokenVerifier(settings)
    if celery_app is not None:
        # An API only publishes. Celery's Redis result backend would subscribe to every task's
        # result channel on send (on_task_call) for a result nobody here waits on; status is
        # read from Redis directly. Workers keep their backend: they import the app afresh.
        celery_app.conf.result_backend = "disabled://"
    app.state.celery = celery_app
    install_error_handlers(app)
    # Inside the observability middleware, so its refusals carry the request id and are counted.
    app.add_middleware(RequestShapeMiddleware)
    app.add_middleware(ObservabilityMiddleware, service=settings.service_name)
    registry = metrics_registry()

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "ok", "service": settings.service_name}

    async def run_checks() -> tuple[bool, dict[str, Any]]:
        results: dict[str, Any] = {}

        async def run(name: str, check: ReadyCheck) -> None:
            try:
                await asyncio.wait_for(check(app), timeout=3)
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"unavailable: {type(exc).__name__}"

        await asyncio.gather(*(run(n, c) for n, c in checks.items()))
        ok = all(v == "ok" for v in results.values())
        body = {
            "status": "ready" if ok else "unavailable",
            "service": settings.service_name,
            "checks": results,
        }
        return ok, body

    readiness = CachedReadiness(run_checks, settings.ready_cache_seconds)

    @app.get("/ready", tags=["operations"])
    async def ready() -> Response:
        """Ready: every dependency answers (503 names the ones that do not).

        Answered from a check at most READY_CACHE_SECONDS old (`age_seconds`), so probing it
        as often as you like costs Redis and RabbitMQ nothing.
        """
        ok, body = await readiness.get()
        return JSONResponse(body, status_code=200 if ok else 503, headers={} if ok else {"Retry-After": "5"})

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics() -> Response:
        data, content_type = render_metrics(registry)
        return Response(data, media_type=content_type)

    for router in routers:
        app.include_router(router)
    return app
