"""task-service's settings (environment variables), on top of the shared ones."""

from __future__ import annotations

from functools import cached_property

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared import BaseServiceSettings, CacheLimits


class TaskSettings(BaseServiceSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: str = "task-service"
    port: int = 8001
    worker_metrics_port: int | None = 9101
    # Countdowns wait in Redis (the fair queue's delayed set), not in a worker; the cap keeps
    # the API's promise (README: countdown <= 900 s).
    max_countdown_seconds: int = 900
    max_data_bytes: int = 1_000_000
    # A long-running task hands itself over to a fresh delivery after this long, so no single
    # run nears the time limits however many steps it has.
    long_task_slice_seconds: int = 20 * 60

    # The per-user cache (API.md "Fair share"). Every entry expires; each user is bounded.
    # CACHE_REDIS_URL gives the cache a Redis of its own (allkeys-lru), so cache values never
    # evict the platform's state; unset, the cache shares REDIS_URL.
    cache_redis_url_override: str | None = Field(default=None, alias="CACHE_REDIS_URL")
    cache_default_ttl: int = Field(default=86_400, ge=1)
    cache_max_ttl: int = Field(default=30 * 24 * 3600, ge=1)
    cache_max_value_bytes: int = Field(default=1024 * 1024, ge=1)
    cache_max_keys_per_user: int = Field(default=10_000, ge=1)
    cache_max_bytes_per_user: int = Field(default=64 * 1024 * 1024, ge=1)

    # Schedules (API.md "Schedules"): how many one user may hold, and the scheduler process's
    # metrics port (python -m task_service.scheduler; any number of them may run).
    max_schedules_per_user: int = Field(default=100, ge=1)
    scheduler_metrics_port: int | None = 9104
    # Where schedules of background-scraping and send-notification are validated and submitted
    # (their internal endpoints; the same names and defaults as the gateway's routing settings).
    scraping_service_url: str = "http://127.0.0.1:8002"
    notification_service_url: str = "http://127.0.0.1:8003"

    @cached_property
    def cache_redis_url(self) -> str:
        return self.cache_redis_url_override or self.redis_url

    def cache_limits(self) -> CacheLimits:
        return CacheLimits(
            default_ttl=min(self.cache_default_ttl, self.cache_max_ttl),
            max_ttl=self.cache_max_ttl,
            max_value_bytes=self.cache_max_value_bytes,
            max_keys_per_user=self.cache_max_keys_per_user,
            max_bytes_per_user=self.cache_max_bytes_per_user,
        )
