"""Request and response bodies of the scraping API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from shared import HTTP_URL_PATTERN

MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}$"
MAX_URL_LENGTH = 2048
MAX_PROMPT_CHARS = 4000
MAX_SCHEMA_BYTES = 32_000
MAX_AGE_SECONDS = 30 * 24 * 3600


class ScrapeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="The page to scrape: http or https, public addresses only.",
        examples=["https://example.com/"],
        json_schema_extra={"pattern": HTTP_URL_PATTERN},
    )
    # SecretStr: the key never appears in a repr, a log line or a validation error.
    openai_key: SecretStr | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="Your OpenAI API key. Omit it when the server has OPENAI_API_KEY. It is "
        "never stored in the clear, put on the queue, or written to results or logs.",
    )
    model: str = Field(
        default="gpt-4o",
        pattern=MODEL_PATTERN,
        description="The chat model to ask, e.g. gpt-4o or gpt-4o-mini.",
    )
    prompt: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="What to extract or summarise. Without it you get a summary of the page.",
    )
    schema_: dict[str, Any] | None = Field(
        default=None,
        alias="schema",
        description="A JSON Schema; the result's `extraction` then conforms to it "
        "(OpenAI Structured Outputs, strict). Like every JSON body, nested at most 32 deep.",
    )
    max_age: int | None = Field(
        default=None,
        ge=0,
        le=MAX_AGE_SECONDS,
        description="Seconds a cached fetch of this URL may be reused (0: always fetch anew). "
        "Default: one hour.",
    )


class Links(BaseModel):
    status: str
    progress: str
    events: str
    cancel: str


class ScrapeAccepted(BaseModel):
    task_id: str
    status: Literal["PENDING"]
    task_type: str
    queue: str
    links: Links


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class ScrapeResult(BaseModel):
    """The `result` of a finished scraping task (see GET /task-status/{task_id})."""

    url: str
    final_url: str
    status_code: int
    title: str | None
    markdown: str
    summary: str | None = Field(default=None, description="Present when no schema was given.")
    extraction: Any = Field(default=None, description="Present when a schema was given.")
    model: str
    usage: Usage
    fetched_at: str
    from_cache: bool
    cache: dict[str, bool]
    metadata: dict[str, Any]
    links: list[dict[str, str]]
    warnings: list[str]
