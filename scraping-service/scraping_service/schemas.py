"""Request and response bodies of the scraping API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from shared import HTTP_URL_PATTERN, RetryPolicy

from .content_selectors import MAX_SELECTOR_CHARS, MAX_SELECTORS
from .request_headers import MAX_HEADER_NAME_CHARS, MAX_HEADER_VALUE_CHARS, MAX_HEADERS

MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}$"
MAX_URL_LENGTH = 2048
MAX_PROMPT_CHARS = 4000
MAX_SCHEMA_BYTES = 32_000
MAX_AGE_SECONDS = 30 * 24 * 3600

Selector = Annotated[str, Field(min_length=1, max_length=MAX_SELECTOR_CHARS)]
HeaderName = Annotated[str, Field(min_length=1, max_length=MAX_HEADER_NAME_CHARS)]
HeaderValue = Annotated[SecretStr, Field(max_length=MAX_HEADER_VALUE_CHARS)]


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
    include_selectors: list[Selector] | None = Field(
        default=None,
        max_length=MAX_SELECTORS,
        description=f"CSS selectors (at most {MAX_SELECTORS}, each at most {MAX_SELECTOR_CHARS} "
        "characters): only the matching elements, in document order, count as the page's content. "
        "Applied to HTML before main-content extraction. A selector that does not parse is 422.",
        examples=[["article", ".post-body"]],
    )
    exclude_selectors: list[Selector] | None = Field(
        default=None,
        max_length=MAX_SELECTORS,
        description=f"CSS selectors (at most {MAX_SELECTORS}, each at most {MAX_SELECTOR_CHARS} "
        "characters) whose elements are removed before extraction (applied before include_selectors).",
        examples=[[".comments", "aside.related"]],
    )
    # Values are SecretStr: never in a repr, a log line or a validation error.
    headers: dict[HeaderName, HeaderValue] | None = Field(
        default=None,
        max_length=MAX_HEADERS,
        description=f"Request headers for the page (at most {MAX_HEADERS}; names are HTTP tokens of "
        f"at most {MAX_HEADER_NAME_CHARS} characters, values at most {MAX_HEADER_VALUE_CHARS}), e.g. "
        "a Cookie for a page behind a login. Sent only to the URL's own origin (dropped on a redirect "
        "elsewhere, never sent for robots.txt). Hop-by-hop, framing, Host, User-Agent and proxy headers "
        "are refused (422). A result fetched with headers is never cached or reused, and the headers "
        "are sealed like openai_key: never stored in the clear, queued, logged or returned.",
        examples=[{"Cookie": "session=..."}],
    )
    retry: RetryPolicy | None = Field(
        default=None,
        description="Retry policy for errors a later try may fix (a 5xx page, a busy model); default "
        "1 + SCRAPE_TASK_MAX_RETRIES attempts, exponential from 1 s to 60 s, at least a Retry-After.",
    )
    queue_timeout_seconds: float | None = Field(
        default=None, gt=0, description="Not started by then: it never runs and ends EXPIRED (at most 1500)."
    )
    run_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        description="An attempt running longer ends FAILURE, TimeLimitExceeded (at most 1500).",
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
    estimated_cost_usd: float | None = Field(
        default=None,
        description="The tokens at the model's list price (scraping_service/prices.json, with the "
        "date its prices were taken). Absent when the model's price is unknown.",
    )


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


class ScrapeReplayIn(BaseModel):
    """What a replay brings again: the secrets a scrape never keeps (see ScrapeIn)."""

    model_config = ConfigDict(extra="forbid")
    openai_key: SecretStr | None = Field(default=None, min_length=1, max_length=512)
    headers: dict[HeaderName, HeaderValue] | None = Field(default=None, max_length=MAX_HEADERS)
