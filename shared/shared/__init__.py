"""The one library every smart_application service uses. It imports no service."""

from shared import (
    _bootstrap,  # noqa: F401  (must run before prometheus_client is imported)
    worker_runtime,
)
from shared._app import create_service_app
from shared._auth import (
    KNOWN_SCOPES,
    SERVICE_TOKEN_HEADER,
    CacheUser,
    CurrentUser,
    Principal,
    ScrapeUser,
    SendUser,
    TasksUser,
    TokenVerifier,
    bearer_token,
    mint_service_token,
    mint_token,
    service_caller,
)
from shared._cache import (
    BATCH_MAX_KEYS,
    CACHE_KEY_RE,
    LIST_DEFAULT_LIMIT,
    LIST_MAX_LIMIT,
    Cache,
    CacheLimits,
    not_modified,
)
from shared._callbacks import callback_secret
from shared._celery import (
    PlatformTask,
    make_celery,
    make_queue,
    report_progress,
)
from shared._context import request_id_var
from shared._deps import CeleryDep, EventsDep, RecordsDep, app_state
from shared._errors import (
    AppError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
    error_body,
    install_error_handlers,
)
from shared._gc import tune_gc
from shared._http_client import OutboundClient
from shared._http_fields import MAX_RETRY_AFTER_SECONDS, origin_of, parse_retry_after
from shared._ip_policy import Allowlist
from shared._logging import configure_logging
from shared._lua import read_lua
from shared._metrics import (
    NOTIFICATION_DELIVERIES,
    NOTIFICATIONS_SCHEDULED,
    OPENAI_TOKENS,
    SCHEDULE_RUNS,
    SCHEDULE_RUNS_LATE,
    SCHEDULE_RUNS_RECOVERED,
    SCHEDULE_TICKS_SKIPPED,
    SCHEDULES_OVERDUE,
    SCRAPE_PAGES,
    TASKS_REPLAYED,
    ObservabilityMiddleware,
    metrics_registry,
    render_metrics,
)
from shared._pacing import GCRA_RESERVE_LUA, HostPacer, Pacer, PaceTooFar
from shared._pubsub import STREAM_RESPONSES, Signal
from shared._queues import MAX_PRIORITY, QueueName
from shared._ready import CachedReadiness
from shared._records import TaskRecords, events_channel, merge_status, now_iso
from shared._redis import create_async_redis
from shared._replay import replay_refusal
from shared._retries import RetryPolicy, resolve_policy
from shared._routing import route
from shared._sealing import Sealer, SealError
from shared._server import run_server
from shared._settings import BaseServiceSettings
from shared._shape import (
    HTTP_URL_PATTERN,
    MAX_HEADER_VALUE_BYTES,
    MAX_JSON_DEPTH,
    IdempotencyKey,
    check_headers,
)
from shared._status import REPLAYABLE_STATUSES, STATUSES, TERMINAL_STATUSES, TaskState
from shared._submit import (
    API_PREFIX,
    Idempotency,
    body_fingerprint,
    check_timeouts,
    submit_task,
    was_queued,
)
from shared._task_errors import Continuation, PublicTaskError, TaskCancelled
from shared._url_policy import (
    BodyTooLarge,
    OutboundError,
    OutboundRefused,
    OutboundTimeout,
    OutboundUnreachable,
    check_url,
    resolve_checked,
)
from shared._worker_hooks import install_worker_hooks

__all__ = [
    "API_PREFIX",
    "BATCH_MAX_KEYS",
    "CACHE_KEY_RE",
    "GCRA_RESERVE_LUA",
    "HTTP_URL_PATTERN",
    "KNOWN_SCOPES",
    "LIST_DEFAULT_LIMIT",
    "LIST_MAX_LIMIT",
    "MAX_HEADER_VALUE_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_PRIORITY",
    "MAX_RETRY_AFTER_SECONDS",
    "NOTIFICATIONS_SCHEDULED",
    "NOTIFICATION_DELIVERIES",
    "OPENAI_TOKENS",
    "REPLAYABLE_STATUSES",
    "SCHEDULES_OVERDUE",
    "SCHEDULE_RUNS",
    "SCHEDULE_RUNS_LATE",
    "SCHEDULE_RUNS_RECOVERED",
    "SCHEDULE_TICKS_SKIPPED",
    "SCRAPE_PAGES",
    "SERVICE_TOKEN_HEADER",
    "STATUSES",
    "STREAM_RESPONSES",
    "TASKS_REPLAYED",
    "TERMINAL_STATUSES",
    "Allowlist",
    "AppError",
    "BadRequest",
    "BaseServiceSettings",
    "BodyTooLarge",
    "Cache",
    "CacheLimits",
    "CacheUser",
    "CachedReadiness",
    "CeleryDep",
    "Conflict",
    "Continuation",
    "CurrentUser",
    "EventsDep",
    "Forbidden",
    "HostPacer",
    "Idempotency",
    "IdempotencyKey",
    "NotFound",
    "ObservabilityMiddleware",
    "OutboundClient",
    "OutboundError",
    "OutboundRefused",
    "OutboundTimeout",
    "OutboundUnreachable",
    "PaceTooFar",
    "Pacer",
    "PayloadTooLarge",
    "PlatformTask",
    "Principal",
    "PublicTaskError",
    "QueueName",
    "RecordsDep",
    "RetryPolicy",
    "ScrapeUser",
    "SealError",
    "Sealer",
    "SendUser",
    "ServiceUnavailable",
    "Signal",
    "TaskCancelled",
    "TaskRecords",
    "TaskState",
    "TasksUser",
    "TokenVerifier",
    "TooManyRequests",
    "Unauthorized",
    "Unprocessable",
    "app_state",
    "bearer_token",
    "body_fingerprint",
    "callback_secret",
    "check_headers",
    "check_timeouts",
    "check_url",
    "configure_logging",
    "create_async_redis",
    "create_service_app",
    "error_body",
    "events_channel",
    "install_error_handlers",
    "install_worker_hooks",
    "make_celery",
    "make_queue",
    "merge_status",
    "metrics_registry",
    "mint_service_token",
    "mint_token",
    "not_modified",
    "now_iso",
    "origin_of",
    "parse_retry_after",
    "read_lua",
    "render_metrics",
    "replay_refusal",
    "report_progress",
    "request_id_var",
    "resolve_checked",
    "resolve_policy",
    "route",
    "run_server",
    "service_caller",
    "submit_task",
    "tune_gc",
    "was_queued",
    "worker_runtime",
]
