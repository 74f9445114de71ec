"""task-service: create_app() for uvicorn (--factory)."""

from __future__ import annotations

from fastapi import FastAPI

from shared import create_service_app
from task_service.routes import router
from task_service.settings import TaskSettings


def create_app(settings: TaskSettings | None = None) -> FastAPI:
    settings = settings or TaskSettings()
    from task_service.worker import app as celery_app

    return create_service_app(
        settings,
        title="smart_application task-service",
        description="Generic and long-running background tasks, status and progress of every "
        "service's tasks, and the per-user cache.",
        routers=[router],
        celery_app=celery_app,
    )
