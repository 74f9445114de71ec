"""Schedules through the API (API.md "Schedules"): cron in a time zone, or every n seconds.

Each run submits the schedule's target as its owner would, through the same checks and the
same submission path (targets.py); the scheduler that runs them is scheduler.py.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from shared import (
    API_PREFIX,
    Forbidden,
    NotFound,
    Principal,
    TasksUser,
    TooManyRequests,
    Unprocessable,
    route,
)
from task_service.remote_targets import REMOTE_TARGETS, validate_remote
from task_service.schedule_schemas import ScheduleIn, ScheduleList, ScheduleOut, SchedulePatch, Target
from task_service.schedules import Schedules, TooManySchedules, check_cron, check_timezone, view
from task_service.settings import TaskSettings
from task_service.targets import prepare_target

router = APIRouter(prefix=API_PREFIX, tags=["schedules"])

# The scope each target endpoint asks of its caller (send-notification asks none to send to
# yourself, `notify:send` for anyone else).
TARGET_SCOPES = {
    "background-task": "tasks",
    "long-running-task": "tasks",
    "background-scraping": "scrape",
    "send-notification": None,
}


def _store(request: Request) -> Schedules:
    store: Schedules | None = getattr(request.app.state, "schedules", None)
    if store is None:
        store = request.app.state.schedules = Schedules(request.app.state.redis)
    return store


async def _check_target(target: Target, user: Principal, settings: TaskSettings) -> None:
    """The caller may call the target, and its body passes the target endpoint's own checks."""
    scope = TARGET_SCOPES[target.path]
    if scope is not None and not user.has(scope):
        raise Forbidden(f"A schedule of {target.path} needs the '{scope}' scope.")
    if target.path in REMOTE_TARGETS:
        # Their checks live in their own services (remote_targets.py): asked now, their 4xx
        # passed through; a body with a user's secret is refused before anything is sent.
        await validate_remote(target.path, target.body, user, settings)
        return
    prepare_target(target.path, target.body, settings, where="target.body")


def _check_timing(cron: str | None, every_seconds: int | None, timezone: str) -> None:
    if (cron is None) == (every_seconds is None):
        raise Unprocessable("Give exactly one of cron and every_seconds.", code="invalid_schedule")
    check_timezone(timezone)
    if cron is not None:
        check_cron(cron)


async def _own(request: Request, user: Principal, schedule_id: str) -> dict[str, Any]:
    doc = await _store(request).get_for(user.sub, schedule_id)
    if doc is None:
        raise NotFound("No schedule of yours has this id.")
    return doc


@route(
    router,
    "POST",
    "/schedules/",
    status_code=201,
    response_model=ScheduleOut,
    responses={429: {"description": "too_many_schedules: MAX_SCHEDULES_PER_USER reached."}},
)
async def create_schedule(request: Request, body: ScheduleIn, user: TasksUser) -> dict[str, Any]:
    """Run `target` on a cron schedule in `timezone`, or every `every_seconds` (at least 5).

    The target body is checked now, exactly as its endpoint would check it; each run is an
    ordinary task of yours (status, events, cancel).
    """
    settings: TaskSettings = request.app.state.settings
    _check_timing(body.cron, body.every_seconds, body.timezone)
    await _check_target(body.target, user, settings)
    fields = body.model_dump(mode="json")
    try:
        doc = await _store(request).create(user.sub, fields, settings.max_schedules_per_user)
    except TooManySchedules:
        raise TooManyRequests(
            f"You already have {settings.max_schedules_per_user} schedules; delete one first.",
            code="too_many_schedules",
            headers={"Retry-After": "60"},
        ) from None
    return view(doc)


@route(router, "GET", "/schedules/", response_model=ScheduleList)
async def list_schedules(request: Request, user: TasksUser) -> dict[str, Any]:
    """Your schedules, newest first."""
    docs = await _store(request).list_for(user.sub)
    return {"schedules": [view(d) for d in docs], "count": len(docs)}


@route(router, "GET", "/schedules/{schedule_id}", response_model=ScheduleOut)
async def get_schedule(request: Request, schedule_id: str, user: TasksUser) -> dict[str, Any]:
    """One of your schedules: next_run_at, last_run_at, last_task_id and runs."""
    return view(await _own(request, user, schedule_id))


@route(router, "PATCH", "/schedules/{schedule_id}", response_model=ScheduleOut)
async def patch_schedule(
    request: Request, schedule_id: str, body: SchedulePatch, user: TasksUser
) -> dict[str, Any]:
    """Pause, resume or edit a schedule. A new timing, or a resume, counts its ticks from now."""
    settings: TaskSettings = request.app.state.settings
    doc = await _own(request, user, schedule_id)
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = body.name
    if body.paused is not None:
        changes["paused"] = body.paused
    if body.cron is not None and body.every_seconds is not None:
        raise Unprocessable("Give exactly one of cron and every_seconds.", code="invalid_schedule")
    if body.cron is not None:
        changes.update(cron=body.cron, every_seconds=None)
    if body.every_seconds is not None:
        changes.update(every_seconds=body.every_seconds, cron=None)
    if body.timezone is not None:
        changes["timezone"] = body.timezone
    timing_changed = any(k in changes for k in ("cron", "every_seconds", "timezone"))
    merged = {**doc, **changes}
    _check_timing(merged["cron"], merged["every_seconds"], merged["timezone"])
    if body.target is not None:
        await _check_target(body.target, user, settings)
        changes["target"] = body.target.model_dump(mode="json")
    new = await _store(request).update(schedule_id, user.sub, changes, timing_changed)
    if new is None:
        raise NotFound("No schedule of yours has this id.")
    return view(new)


@route(router, "DELETE", "/schedules/{schedule_id}", status_code=204, response_class=Response)
async def delete_schedule(request: Request, schedule_id: str, user: TasksUser) -> Response:
    """Delete a schedule: it runs no more (a task it already started goes on)."""
    await _store(request).delete(await _own(request, user, schedule_id))
    return Response(status_code=204)
