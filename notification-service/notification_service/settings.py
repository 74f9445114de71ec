"""notification-service's settings (environment variables), on top of the shared ones."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from notification_service.webpush import validate_subject
from shared import BaseServiceSettings


class NotificationSettings(BaseServiceSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: str = "notification-service"
    port: int = 8003
    worker_metrics_port: int | None = 9103

    # VAPID (RFC 8292): without a key one is generated once and kept in Redis.
    vapid_private_key: str | None = Field(default=None, repr=False)
    vapid_subject: str = "mailto:admin@localhost.localdomain"

    # Records (notifications, deliveries, inbox entries) are kept this long.
    notify_retention_seconds: int = Field(default=7 * 24 * 3600, ge=3600)
    notify_default_ttl: int = Field(default=24 * 3600, ge=0, le=28 * 24 * 3600)
    notify_max_batch: int = Field(default=10_000, ge=1, le=100_000)
    notify_max_devices_per_user: int = Field(default=50, ge=1, le=1000)
    notify_inbox_max_items: int = Field(default=1000, ge=10)
    # A batch is split into chunks, one delivery task each, that worker processes share
    # (see delivery.chunk_size); no chunk holds more notifications than this, so other tasks
    # on the queue get their turn between chunks.
    notify_chunk_size: int = Field(default=2500, ge=1, le=5000)
    # Requests in flight at once in one worker process.
    notify_concurrency: int = Field(default=64, ge=1, le=1000)
    notify_http_timeout: float = Field(default=10.0, gt=0, le=120)
    notify_retry_base_seconds: float = Field(default=2.0, gt=0)
    notify_retry_cap_seconds: float = Field(default=900.0, gt=0)
    notify_max_attempts: int = Field(default=20, ge=1, le=100)
    # A delivery still `sending` after this long lost its worker; the sweeper re-queues it.
    notify_stuck_after_seconds: float = Field(default=120.0, gt=0)
    # Deliveries to one destination host (a webhook receiver, a push service), per second,
    # across every worker: no batch floods a third party. Raise it for push services you
    # send much to; a delivery whose turn is further away than a quarter of
    # NOTIFY_STUCK_AFTER_SECONDS is retried later instead of holding its claim. A worker
    # process claims up to about NOTIFY_CONCURRENCY + 100 deliveries ahead of its sends, so
    # keep processes x (NOTIFY_CONCURRENCY + 100) / this well below NOTIFY_STUCK_AFTER_SECONDS
    # (at the defaults, 4 processes: 13 s against 120 s).
    notify_max_per_host_per_second: float = Field(default=50.0, gt=0)

    # How often each worker moves due scheduled notifications and deliveries deferred by quiet
    # hours from Redis to the queue (0: only beat's sweeper does, once a minute).
    notify_later_poll_seconds: float = Field(default=1.0, ge=0, le=60)

    @field_validator("vapid_subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        return validate_subject(value)
