"""Gateway settings: where the services live, and the limits of the front door."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from shared import BaseServiceSettings

MIB = 1024 * 1024


class GatewaySettings(BaseServiceSettings):
    service_name: str = "gateway"
    port: int = 8000

    task_service_url: str = "http://127.0.0.1:8001"
    scraping_service_url: str = "http://127.0.0.1:8002"
    notification_service_url: str = "http://127.0.0.1:8003"

    # GCRA per user (the token's sub), shared by every replica through Redis.
    rate_limit_enabled: bool = True
    rate_limit_per_minute: int = Field(default=1200, ge=1)
    rate_limit_burst: int = Field(default=200, ge=1)
    # After Redis fails, the limiter runs in-process for this long before trying Redis again.
    rate_limit_fallback_seconds: float = Field(default=5.0, gt=0)
    # How long a request waits for Redis before the limiter falls back (see ratelimit.py).
    rate_limit_redis_timeout_seconds: float = Field(default=0.5, gt=0)

    # Request bodies: the default, and the larger one batch-notifications needs (10,000 items).
    max_body_bytes: int = Field(default=1 * MIB, ge=1024)
    max_batch_body_bytes: int = Field(default=16 * MIB, ge=1024)
    # All header values together; a bearer token is at most JWT_MAX_LENGTH (8 KiB) of it.
    max_header_bytes: int = Field(default=32 * 1024, ge=8 * 1024)

    # The whole exchange with a service (connect, send, answer) must fit in this; event
    # streams are exempt once their headers arrive.
    request_deadline_seconds: float = Field(default=30.0, gt=0)
    upstream_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    # Below uvicorn's 5 s keep-alive in the services, so the gateway never reuses a
    # connection the service is about to close (a POST on such a connection cannot be retried).
    upstream_keepalive_seconds: float = Field(default=4.0, gt=0)
    upstream_pool_size: int = Field(default=256, ge=1)

    # Event streams (task-events, inbox/stream) travel on connections of their own, outside
    # UPSTREAM_POOL_SIZE. Each user has at most this many open at once, across every replica.
    max_streams_per_user: int = Field(default=20, ge=1)
    # A stream ends cleanly after this long; the client reconnects (with Last-Event-ID).
    stream_max_seconds: float = Field(default=600.0, gt=0)
    # A replica renews its streams' slots every third of this; a crashed replica's slots are
    # free again this long after its last renewal.
    stream_lease_seconds: float = Field(default=30.0, ge=1)

    # Comma-separated origins ("*" for any); empty disables CORS.
    cors_origins: str = ""
    cors_allow_credentials: bool = False

    # Behind a trusted load balancer, append to its X-Forwarded-For instead of replacing it.
    trust_forwarded_headers: bool = False

    # Verified tokens are remembered (by their exact text) for at most this long.

    # /metrics lives on this internal port only (never the public one); 0 turns it off.
    gateway_metrics_port: int = Field(default=9100, ge=0, le=65535)

    openapi_cache_seconds: float = Field(default=60.0, ge=0)
    ready_timeout_seconds: float = Field(default=3.0, gt=0)

    @field_validator("task_service_url", "scraping_service_url", "notification_service_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("service URLs must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _no_credentials_for_any_origin(self) -> GatewaySettings:
        if self.cors_allow_credentials and "*" in self.cors_origin_list:
            raise ValueError("CORS_ALLOW_CREDENTIALS=true needs explicit CORS_ORIGINS, not '*'")
        return self

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]
