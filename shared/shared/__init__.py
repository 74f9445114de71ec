"""The one library every smart_application service uses. It imports no service."""

from shared import _bootstrap  # noqa: F401  (must run before prometheus_client is imported)
from shared._app import create_service_app
from shared._auth import (
    KNOWN_SCOPES,
    CurrentUser,
    Principal,
    TokenVerifier,
    bearer_token,
    current_user,
    mint_token,
    require_scope,
)
from shared._cache import Cache, CacheLimits
from shared._callbacks import callback_secret
from shared._celery import (
    PlatformCelery,
    PlatformTask,
    PublicTaskError,
    TaskCancelled,
    install_worker_hooks,
    make_celery,
    report_progress,
)
from shared._context import request_id_var, task_id_var
from shared._deps import CacheDep, CeleryDep, RecordsDep
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
from shared._logging import configure_logging
from shared._metrics import (
    NOTIFICATION_DELIVERIES,
    OPENAI_TOKENS,
    SCRAPE_PAGES,
    ObservabilityMiddleware,
    clean_request_id,
    metrics_registry,
    render_metrics,
)
from shared._outbound import (
    Allowlist,
    BodyTooLarge,
    OutboundError,
    OutboundRefused,
    OutboundTimeout,
    OutboundUnreachable,
    SafeAsyncClient,
    SafeClient,
    SafeResponse,
    check_url,
    forbidden_reason,
    parse_ip_literal,
)
from shared._pacing import HostPacer, Pacer, PaceTooFar
from shared._queues import MAX_PRIORITY, QueueName
from shared._records import STATUSES, TERMINAL, TaskRecords, events_channel, now_iso
from shared._redis import RedisDep, create_async_redis, create_sync_redis
from shared._routing import route
from shared._sealing import Sealer, SealError, derive_sealing_key
from shared._server import run_server
from shared._settings import BaseServiceSettings
from shared._submit import API_PREFIX, Idempotency, accepted_view, publish, submit_task

__all__ = [
    "API_PREFIX",
    "KNOWN_SCOPES",
    "MAX_PRIORITY",
    "NOTIFICATION_DELIVERIES",
    "OPENAI_TOKENS",
    "SCRAPE_PAGES",
    "STATUSES",
    "TERMINAL",
    "Allowlist",
    "AppError",
    "BadRequest",
    "BaseServiceSettings",
    "BodyTooLarge",
    "Cache",
    "CacheDep",
    "CacheLimits",
    "CeleryDep",
    "Conflict",
    "CurrentUser",
    "Forbidden",
    "HostPacer",
    "Idempotency",
    "NotFound",
    "ObservabilityMiddleware",
    "OutboundError",
    "OutboundRefused",
    "OutboundTimeout",
    "OutboundUnreachable",
    "PaceTooFar",
    "Pacer",
    "PayloadTooLarge",
    "PlatformCelery",
    "PlatformTask",
    "Principal",
    "PublicTaskError",
    "QueueName",
    "RecordsDep",
    "RedisDep",
    "SafeAsyncClient",
    "SafeClient",
    "SafeResponse",
    "SealError",
    "Sealer",
    "ServiceUnavailable",
    "TaskCancelled",
    "TaskRecords",
    "TokenVerifier",
    "TooManyRequests",
    "Unauthorized",
    "Unprocessable",
    "accepted_view",
    "bearer_token",
    "callback_secret",
    "check_url",
    "clean_request_id",
    "configure_logging",
    "create_async_redis",
    "create_service_app",
    "create_sync_redis",
    "current_user",
    "derive_sealing_key",
    "error_body",
    "events_channel",
    "forbidden_reason",
    "install_error_handlers",
    "install_worker_hooks",
    "make_celery",
    "metrics_registry",
    "mint_token",
    "now_iso",
    "parse_ip_literal",
    "publish",
    "render_metrics",
    "report_progress",
    "request_id_var",
    "require_scope",
    "route",
    "run_server",
    "submit_task",
    "task_id_var",
]
