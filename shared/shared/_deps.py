"""Annotated dependencies for the clients every service makes in its lifespan."""

from __future__ import annotations

from typing import Annotated

from celery import Celery
from fastapi import Depends, Request

from shared._cache import Cache
from shared._pubsub import EventHub
from shared._records import TaskRecords


async def _records(request: Request) -> TaskRecords:
    records: TaskRecords = request.app.state.records
    return records


async def _cache(request: Request) -> Cache:
    cache: Cache = request.app.state.cache
    return cache


async def _celery(request: Request) -> Celery:
    app: Celery = request.app.state.celery
    return app


async def _events(request: Request) -> EventHub:
    hub: EventHub = request.app.state.events
    return hub


RecordsDep = Annotated[TaskRecords, Depends(_records)]
CacheDep = Annotated[Cache, Depends(_cache)]
CeleryDep = Annotated[Celery, Depends(_celery)]
EventsDep = Annotated[EventHub, Depends(_events)]
