"""The schedules' request and answer bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from task_service.schedules import MAX_EVERY_SECONDS, MIN_EVERY_SECONDS

TargetPath = Literal["background-task", "long-running-task", "background-scraping", "send-notification"]


# The paths a schedule runs: the schema states what the API accepts.
SUPPORTED_PATHS: list[JsonValue] = [
    "background-task",
    "long-running-task",
    "background-scraping",
    "send-notification",
]


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: TargetPath = Field(
        description="The endpoint each run submits to, as if you had called it.",
        json_schema_extra={"enum": SUPPORTED_PATHS},
    )
    body: dict[str, Any] = Field(
        default_factory=dict,
        description="That endpoint's request body; checked now exactly as the endpoint checks it.",
        examples=[{"task_type": "data_processing", "data": {"input": "x"}}],
    )


class ScheduleIn(BaseModel):
    # Exactly one of cron and every_seconds (both or neither: 422 invalid_schedule).
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [{"required": ["cron"]}, {"required": ["every_seconds"]}],
            "examples": [
                {
                    "name": "nightly report",
                    "target": {"path": "background-task", "body": {"task_type": "noop", "data": {}}},
                    "cron": "30 2 * * *",
                    "timezone": "Europe/Paris",
                }
            ],
        },
    )
    name: str = Field(min_length=1, max_length=200)
    target: Target
    cron: str | None = Field(
        default=None, max_length=200, description="Five fields, in `timezone`.", examples=["*/5 * * * *"]
    )
    timezone: str = Field(default="UTC", max_length=64, examples=["Europe/Paris"])
    every_seconds: int | None = Field(
        default=None, ge=MIN_EVERY_SECONDS, le=MAX_EVERY_SECONDS, description="Instead of `cron`."
    )
    paused: bool = False


class SchedulePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    target: Target | None = None
    cron: str | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    every_seconds: int | None = Field(default=None, ge=MIN_EVERY_SECONDS, le=MAX_EVERY_SECONDS)
    paused: bool | None = None


class ScheduleOut(BaseModel):
    schedule_id: str
    name: str
    target: Target
    cron: str | None
    timezone: str
    every_seconds: int | None
    paused: bool
    next_run_at: str | None = Field(description="ISO time of the next run; null while paused.")
    last_run_at: str | None
    last_task_id: str | None
    runs: int = Field(description="Ticks run so far (each tick runs once).")
    created_at: str
    updated_at: str


class ScheduleList(BaseModel):
    schedules: list[ScheduleOut]
    count: int
