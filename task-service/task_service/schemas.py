from __future__ import annotations

from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from shared import MAX_PRIORITY

Status = Literal["PENDING", "STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED"]


class SubmitOptions(BaseModel):
    countdown: float | None = Field(
        default=None, ge=0, description="Seconds to wait before the task may start (at most 900)."
    )
    priority: int | None = Field(
        default=None, ge=0, le=MAX_PRIORITY, description="0 (lowest) to 9 (highest); 5 when omitted."
    )
    callback_url: AnyHttpUrl | None = Field(
        default=None,
        description="The final status is POSTed here, signed (Standard Webhooks), public addresses only.",
    )


class BackgroundTaskIn(SubmitOptions):
    model_config = ConfigDict(extra="forbid")
    task_type: str = Field(min_length=1, max_length=64, examples=["data_processing"])
    data: dict[str, Any] = Field(default_factory=dict, examples=[{"input": "sample_data"}])


class LongRunningTaskIn(SubmitOptions):
    model_config = ConfigDict(extra="forbid")
    steps: int = Field(default=10, ge=1, le=10_000)
    step_seconds: float = Field(default=1.0, ge=0, le=60)
    data: dict[str, Any] = Field(default_factory=dict)


class Links(BaseModel):
    status: str
    progress: str
    events: str
    cancel: str


class TaskAccepted(BaseModel):
    task_id: str
    status: Status
    task_type: str
    queue: str
    links: Links


class TaskType(BaseModel):
    name: str
    description: str
    input_schema: dict[str, Any] = Field(description="JSON Schema of the task's `data`.")


class TaskTypeList(BaseModel):
    task_types: list[TaskType]


class TaskError(BaseModel):
    type: str
    message: str


class TaskStatus(BaseModel):
    task_id: str
    status: Status
    task_type: str | None
    queue: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    result: Any = None
    error: TaskError | None = None


class TaskProgress(BaseModel):
    task_id: str
    status: Status
    current: int
    total: int
    percent: float
    message: str | None
    updated_at: str | None


class TaskList(BaseModel):
    tasks: list[TaskStatus]
    count: int


class CancelAccepted(BaseModel):
    task_id: str
    status: Status
    cancel_requested: bool


class CachePut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: Any
    ttl: int | None = Field(default=None, ge=1, le=30 * 24 * 3600, description="Seconds; none keeps it.")


class CacheEntry(BaseModel):
    key: str
    value: Any
    ttl: int | None
