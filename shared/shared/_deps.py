"""What each service's lifespan puts on `app.state`, read back typed: one accessor, and the
Annotated dependencies for the clients every service makes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar, cast

from celery import Celery
from fastapi import Depends, Request

from shared._pubsub import EventHub
from shared._records import TaskRecords

T = TypeVar("T")


def app_state(request: Request, name: str, kind: type[T]) -> T:
    """`request.app.state.<name>`, typed as `kind` (not checked: the lifespan set it)."""
    return cast(T, getattr(request.app.state, name))


def state_dependency(name: str, kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A FastAPI dependency returning `app.state.<name>`; async, so it runs on the event loop
    rather than in the thread pool FastAPI gives plain functions."""

    async def dependency(request: Request) -> T:
        return app_state(request, name, kind)

    dependency.__name__ = f"state_{name}"
    return dependency


RecordsDep = Annotated[TaskRecords, Depends(state_dependency("records", TaskRecords))]
CeleryDep = Annotated[Celery, Depends(state_dependency("celery", Celery))]
EventsDep = Annotated[EventHub, Depends(state_dependency("events", EventHub))]
