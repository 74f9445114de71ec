"""Typed settings: one base here, one subclass per service."""

from __future__ import annotations

from functools import cached_property
from typing import Literal
from urllib.parse import quote

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-insecure-jwt-secret-change-me"  # noqa: S105 - the known default we refuse in production
DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"  # noqa: S105


class BaseServiceSettings(BaseSettings):
    """Settings every service and worker shares; env names follow docs/api.md and the seed."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    service_name: str = "smartapp"
    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    host: str = "127.0.0.1"
    port: int = 8000
    web_concurrency: int = Field(default=1, ge=1, le=64)

    # Identity: the algorithm is pinned here, never taken from a token.
    jwt_secret: str = DEV_JWT_SECRET
    jwt_algorithm: Literal["HS256", "HS384", "HS512", "RS256", "ES256"] = "HS256"
    jwt_public_key: str | None = None
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: int = Field(default=0, ge=0, le=300)
    jwt_max_length: int = Field(default=8192, ge=256)
    # Accepted tokens are remembered by their exact text until min(exp, now + this), so a
    # client's repeated requests skip the signature check; 0 turns the memory off.
    token_cache_seconds: float = Field(default=60.0, ge=0)
    token_cache_size: int = Field(default=10_000, ge=0)

    # Server-side secret for sealing data at rest (e.g. users' API keys) and signing callbacks.
    secret_key: str = DEV_SECRET_KEY

    redis_host: str = "localhost"
    redis_port: int = 6379
    redis_db: int = 0
    redis_url_override: str | None = Field(default=None, alias="REDIS_URL")
    redis_socket_timeout: float = 2.0

    rabbitmq_host: str = "localhost"
    rabbitmq_port: int = 5672
    rabbitmq_user: str = "guest"
    rabbitmq_password: str = "guest"  # noqa: S105 - RabbitMQ's local default
    rabbitmq_vhost: str = "/"
    broker_url_override: str | None = Field(default=None, alias="BROKER_URL")

    # /ready answers from a check at most this old, so probes never load Redis or RabbitMQ.
    ready_cache_seconds: float = Field(default=5.0, ge=0, le=60)

    outbound_allowlist: str = ""

    # Celery result records expire after a week; task records after the same.
    result_expires_seconds: int = 7 * 24 * 3600
    # A task that ended FAILURE, REVOKED or EXPIRED is kept with its inputs (secrets never) this
    # long from its end, so it can be replayed (POST /task-retry/{id}, POST /tasks/retry).
    failed_retention_days: int = 7
    worker_metrics_port: int | None = None
    # One message per pool process at a time: a long task never holds a second one hostage.
    # Raise it only for a worker whose queue carries short tasks alone.
    worker_prefetch_multiplier: int = Field(default=1, ge=1, le=64)
    task_soft_time_limit: int = 25 * 60
    task_time_limit: int = 28 * 60  # below RabbitMQ's 30 min consumer_timeout

    # Fair share of the queues (shared/_fairq.py): the unfinished tasks one user may have (one
    # more is 429 too_many_tasks), and the messages per live worker slot let into the broker
    # (more keeps workers busier between passes; fewer lets a newcomer's task run sooner).
    max_queued_tasks_per_user: int = Field(default=10_000, ge=1)
    fair_window_per_slot: int = Field(default=2, ge=1, le=100)

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> BaseServiceSettings:
        if self.environment == "production":
            if self.jwt_algorithm.startswith("HS") and self.jwt_secret == DEV_JWT_SECRET:
                raise ValueError("JWT_SECRET must be set outside development (ENVIRONMENT=production)")
            if self.jwt_algorithm.startswith("HS") and len(self.jwt_secret.encode()) < 32:
                raise ValueError("JWT_SECRET must be at least 32 bytes (RFC 7518 section 3.2)")
            if self.secret_key == DEV_SECRET_KEY:
                raise ValueError("SECRET_KEY must be set outside development (ENVIRONMENT=production)")
        if self.jwt_algorithm.startswith(("RS", "ES")) and not (self.jwt_public_key or self.jwks_url):
            raise ValueError(f"JWT_ALGORITHM={self.jwt_algorithm} needs JWT_PUBLIC_KEY or JWKS_URL")
        return self

    @cached_property
    def redis_url(self) -> str:
        return self.redis_url_override or f"redis://{self.redis_host}:{self.redis_port}/{self.redis_db}"

    @cached_property
    def broker_url(self) -> str:
        if self.broker_url_override:
            return self.broker_url_override
        vhost = quote(self.rabbitmq_vhost, safe="")
        user = quote(self.rabbitmq_user, safe="")
        password = quote(self.rabbitmq_password, safe="")
        return f"amqp://{user}:{password}@{self.rabbitmq_host}:{self.rabbitmq_port}/{vhost}"
