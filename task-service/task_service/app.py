"""task-service: create_app() for uvicorn (--factory)."""

from __future__ import annotations

from fastapi import FastAPI

from shared import Cache, create_async_redis, create_service_app
from task_service.cache_routes import router as cache_router
from task_service.routes import router
from task_service.schedule_routes import router as schedule_router
from task_service.settings import TaskSettings


async def _open_cache(app: FastAPI) -> None:
    settings: TaskSettings = app.state.settings
    client = app.state.redis
    if settings.cache_redis_url != settings.redis_url:
        client = app.state.cache_redis = create_async_redis(settings, settings.cache_redis_url)
    app.state.cache = Cache(client, settings.cache_limits())


async def _close_cache(app: FastAPI) -> None:
    own = getattr(app.state, "cache_redis", None)
    if own is not None:
        await own.aclose()


async def _check_cache_redis(app: FastAPI) -> None:
    await app.state.cache_redis.ping()


def create_app(settings: TaskSettings | None = None) -> FastAPI:
    settings = settings or TaskSettings()
    from task_service.worker import app as celery_app

    return create_service_app(
        settings,
        routers=[router, cache_router, schedule_router],
        celery_app=celery_app,
        ready_checks=(
            {"cache_redis": _check_cache_redis} if settings.cache_redis_url != settings.redis_url else None
        ),
        on_startup=[_open_cache],
        on_shutdown=[_close_cache],
    )
