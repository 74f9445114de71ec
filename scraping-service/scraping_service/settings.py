"""scraping-service settings: the shared base plus fetching, politeness, model and cache knobs."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared import BaseServiceSettings

from .llm import ModelConfig
from .politeness import ThrottlePolicy

DEFAULT_USER_AGENT = "SmartApplicationBot/0.1 (+https://github.com/smart-application; scraping)"


class ScrapingSettings(BaseServiceSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: str = "scraping-service"
    port: int = 8002
    worker_metrics_port: int | None = 9102

    # The model provider. A request's openai_key wins; this one is used when it is omitted.
    openai_api_key: str | None = None
    # Tokens (prompt + completion, as the model reports them) one user may spend of
    # OPENAI_API_KEY per UTC day when a request brings no openai_key; beyond, 429.
    openai_server_key_daily_tokens_per_user: int = Field(default=200_000, ge=1)
    openai_base_url: str | None = None
    openai_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    openai_max_attempts: int = Field(default=4, ge=1, le=10)
    openai_max_retry_after_seconds: float = Field(default=60.0, ge=0, le=600)
    # Models a request may name; empty means any well-formed name.
    scrape_allowed_models: str = ""
    scrape_chunk_tokens: int = Field(default=8000, ge=512, le=200_000)
    scrape_max_output_tokens: int = Field(default=1500, ge=64, le=32_000)
    scrape_max_chunks: int = Field(default=24, ge=1, le=500)
    scrape_model_concurrency: int = Field(default=3, ge=1, le=32)

    # Fetching.
    scrape_user_agent: str = DEFAULT_USER_AGENT
    scrape_allow_private: bool = False
    scrape_max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    scrape_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    scrape_timeout_seconds: float = Field(default=20.0, gt=0, le=300)
    scrape_max_redirects: int = Field(default=5, ge=0, le=10)
    scrape_respect_robots: bool = True
    scrape_robots_ttl_seconds: int = Field(default=24 * 3600, ge=60, le=24 * 3600)

    # Politeness per host, shared by every worker.
    scrape_host_rate: float = Field(default=1.0, gt=0, le=1000)
    scrape_host_burst: int = Field(default=3, ge=1, le=1000)
    scrape_host_max_wait_seconds: float = Field(default=30.0, ge=0, le=600)

    # Caches and key handling.
    scrape_default_max_age: int = Field(default=3600, ge=0)
    scrape_page_cache_ttl_seconds: int = Field(default=24 * 3600, ge=0)
    scrape_result_cache_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=0)
    scrape_key_ttl_seconds: int = Field(default=3600, ge=60, le=24 * 3600)
    scrape_max_markdown_chars: int = Field(default=500_000, ge=1000)
    scrape_task_max_retries: int = Field(default=3, ge=0, le=10)

    def model_config_for_calls(self) -> ModelConfig:
        return ModelConfig(
            base_url=self.openai_base_url or None,
            timeout_s=self.openai_timeout_seconds,
            max_attempts=self.openai_max_attempts,
            max_retry_after_s=self.openai_max_retry_after_seconds,
            chunk_tokens=self.scrape_chunk_tokens,
            max_output_tokens=self.scrape_max_output_tokens,
            max_chunks=self.scrape_max_chunks,
            concurrency=self.scrape_model_concurrency,
        )

    def throttle_policy(self) -> ThrottlePolicy:
        return ThrottlePolicy(
            requests_per_second=self.scrape_host_rate,
            burst=self.scrape_host_burst,
            max_wait_s=self.scrape_host_max_wait_seconds,
        )

    def allowed_models(self) -> frozenset[str]:
        return frozenset(m.strip() for m in self.scrape_allowed_models.split(",") if m.strip())
