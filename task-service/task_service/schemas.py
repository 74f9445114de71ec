"""task-service's request and answer bodies for tasks: what the OpenAPI document shows."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import AnyHttpUrl, AwareDatetime, BaseModel, ConfigDict, Field, SecretStr

from shared import HTTP_URL_PATTERN, MAX_PRIORITY, REPLAYABLE_STATUSES, STATUSES, RetryPolicy

# Spelt out for the type checker and the OpenAPI schema; checked against shared's TaskState.
Status = Literal["PENDING", "STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED", "EXPIRED"]
Replayable = Literal["FAILURE", "REVOKED", "EXPIRED"]
if set(get_args(Status)) != set(STATUSES) or set(get_args(Replayable)) != REPLAYABLE_STATUSES:
    raise RuntimeError("task_service.schemas: the statuses differ from shared.TaskState")


class SubmitOptions(BaseModel):
    countdown: float | None = Field(
        default=None,
        ge=0,
        description="Seconds to wait before the task may start (at most MAX_COUNTDOWN_SECONDS, 900).",
        json_schema_extra={"maximum": 900},
    )
    priority: int | None = Field(
        default=None, ge=0, le=MAX_PRIORITY, description="0 (lowest) to 9 (highest); 5 when omitted."
    )
    callback_url: AnyHttpUrl | None = Field(
        default=None,
        json_schema_extra={"pattern": HTTP_URL_PATTERN},
        description="The final status is POSTed here, signed (Standard Webhooks), public addresses only.",
    )
    queue_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Not started within this many seconds of submission: it never runs and ends EXPIRED "
        "(at most TASK_SOFT_TIME_LIMIT, 1500).",
        json_schema_extra={"maximum": 1500},
    )
    run_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        description="An attempt running longer is stopped: FAILURE with error.type TimeLimitExceeded "
        "(at most TASK_SOFT_TIME_LIMIT, 1500: below RabbitMQ's consumer timeout).",
        json_schema_extra={"maximum": 1500},
    )
    retry: RetryPolicy | None = Field(
        default=None,
        description="Retry policy; fields left out take the task type's defaults (GET /task-types/: "
        "default_max_attempts; exponential backoff from 1 s up to 60 s, with jitter).",
    )


def _task_type_enum(schema: dict[str, Any]) -> None:
    """task_type's enum, and for each type the shape of its `data` (what the route checks).

    The registry is filled when the task kinds are imported, before any schema is rendered.
    """
    from task_service.kinds import REGISTRY, known_kinds

    schema["properties"]["task_type"]["enum"] = known_kinds()
    branches = []
    for name in known_kinds():
        data = REGISTRY[name].model.model_json_schema()
        branch: dict[str, Any] = {"properties": {"task_type": {"const": name}}}
        if "$defs" not in data:  # a self-contained shape only: refs would point nowhere here
            data.pop("title", None)
            branch["properties"]["data"] = data
        branches.append(branch)
    schema["oneOf"] = branches


class BackgroundTaskIn(SubmitOptions):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_task_type_enum)
    task_type: str = Field(min_length=1, max_length=64, examples=["data_processing"])
    data: dict[str, Any] = Field(
        default_factory=dict,
        examples=[{"input": "sample_data"}],
        description="A JSON object (at most 32 levels deep, integers within 64 bits).",
    )


class LongRunningTaskIn(SubmitOptions):
    model_config = ConfigDict(extra="forbid")
    steps: int = Field(default=10, ge=1, le=10_000)
    step_seconds: float = Field(default=1.0, ge=0, le=60)
    data: dict[str, Any] = Field(
        default_factory=dict, description="A JSON object (at most 32 levels deep, integers within 64 bits)."
    )


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
    default_max_attempts: int = Field(description="Attempts when the submission's `retry` sets none.")
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
    attempts: int = 0
    next_retry_at: str | None = None
    retry_of: str | None = None


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
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last."
    )


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # SecretStr: never in a repr, a log line or a validation error. scraping-service checks them
    # as a new scrape's (header names and values: 422 invalid_header).
    openai_key: SecretStr | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="A scrape that used your own key needs it again: keys are never kept.",
    )
    headers: (
        dict[Annotated[str, Field(min_length=1, max_length=64)], Annotated[SecretStr, Field(max_length=4096)]]
        | None
    ) = Field(
        default=None,
        max_length=10,
        description="A scrape that sent request headers needs them again: headers are never kept.",
    )


class ReplayAccepted(TaskAccepted):
    retry_of: str


class BulkReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Replayable = "FAILURE"
    task_type: str | None = Field(default=None, max_length=64)
    since: AwareDatetime | None = Field(default=None, description="Only tasks created at or after this time.")


class BulkReplayAccepted(BaseModel):
    count: int
    task_ids: list[str]


class CancelAccepted(BaseModel):
    task_id: str
    status: Status
    cancel_requested: bool
