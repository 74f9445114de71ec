"""scraping-service's HTTP API: submit a page to scrape and ask a model about."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Request

from shared import (
    API_PREFIX,
    Allowlist,
    Idempotency,
    IdempotencyKey,
    OutboundRefused,
    Principal,
    QueueName,
    ScrapeUser,
    TooManyRequests,
    Unprocessable,
    app_state,
    check_timeouts,
    check_url,
    resolve_policy,
    route,
    submit_task,
)

from .budget import BudgetExceeded, ServerKeyBudget, seconds_to_midnight
from .content_selectors import SelectorError, check_selectors
from .keyvault import KeyVault
from .merge import strict_schema
from .request_headers import HeaderError, check_headers, seal_headers
from .schema_validation import SchemaInvalidError, check_schema
from .schemas import MAX_SCHEMA_BYTES, ScrapeAccepted, ScrapeIn
from .settings import ScrapingSettings

router = APIRouter(prefix=API_PREFIX, tags=["scraping"])

TASK_NAME = "scraping.scrape_page"


def _plain_headers(body: ScrapeIn) -> dict[str, str] | None:
    if not body.headers:
        return None
    return {name: value.get_secret_value() for name, value in body.headers.items()}


def _validate(body: ScrapeIn, settings: ScrapingSettings) -> None:
    check_timeouts(
        settings,
        queue_timeout_seconds=body.queue_timeout_seconds,
        run_timeout_seconds=body.run_timeout_seconds,
    )
    try:
        check_url(
            body.url,
            Allowlist.parse(settings.outbound_allowlist),
            allow_private=settings.scrape_allow_private,
        )
    except OutboundRefused as exc:
        raise Unprocessable(f"url is not allowed: {exc.reason}.", code="url_not_allowed") from None
    allowed = settings.allowed_models()
    if allowed and body.model not in allowed:
        raise Unprocessable(
            f"model {body.model!r} is not offered here; use one of: {', '.join(sorted(allowed))}.",
            code="model_not_allowed",
        )
    if body.prompt is not None and not body.prompt.strip():
        raise Unprocessable("prompt must not be blank.", code="invalid_prompt")
    if body.schema_ is not None:
        if len(orjson.dumps(body.schema_)) > MAX_SCHEMA_BYTES:
            raise Unprocessable(
                f"schema may be at most {MAX_SCHEMA_BYTES} bytes of JSON.", code="schema_too_large"
            )
        try:
            check_schema(body.schema_)
            check_schema(strict_schema(body.schema_)[0])
        except SchemaInvalidError as exc:
            raise Unprocessable(str(exc), code="invalid_schema") from None
    for field, selectors in (
        ("include_selectors", body.include_selectors),
        ("exclude_selectors", body.exclude_selectors),
    ):
        try:
            check_selectors(field, selectors or [])
        except SelectorError as exc:
            raise Unprocessable(str(exc), code="invalid_selector") from None
    try:
        check_headers(_plain_headers(body) or {})
    except HeaderError as exc:
        raise Unprocessable(str(exc), code="invalid_header") from None
    if body.openai_key is None and not settings.openai_api_key:
        raise Unprocessable(
            "openai_key is required: this server has no OPENAI_API_KEY of its own, so send "
            "your OpenAI API key in the request.",
            code="openai_key_required",
        )


@route(
    router,
    "POST",
    "/background-scraping/",
    status_code=202,
    response_model=ScrapeAccepted,
    responses={
        422: {"description": "Invalid URL, model, prompt, schema, max_age, selector or header, or no key."},
        429: {"description": "model_budget_exceeded: today's tokens on the server's key are spent."},
    },
)
async def background_scraping(
    request: Request,
    body: ScrapeIn,
    user: ScrapeUser,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Fetch a page, turn it into markdown and ask an OpenAI model about it, in the background.

    The answer is a summary (steered by `prompt`) or, with `schema`, an `extraction` that
    conforms to it. Poll `links.status` for the result. Your `openai_key` is encrypted at rest
    under a short-lived reference and deleted when the task ends; it is never on the queue.
    `include_selectors` / `exclude_selectors` decide what counts as content; `headers` (a login
    cookie, say) are sealed the same way as the key, sent only to the URL's own origin, and
    make the result uncached. PDF pages are read as text.
    """
    return await enqueue_scrape(request, body, user, idempotency_key)


async def enqueue_scrape(
    request: Request,
    body: ScrapeIn,
    user: Principal,
    idempotency_key: str | None = None,
    *,
    retry: dict[str, Any] | None = None,
    extra_record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate, check the server key's budget, seal the secrets, submit: the one path of every
    scrape (the public endpoint, a schedule's run, a replay). `retry`: a policy already resolved
    (a replay keeps its original's); `extra_record`: fields for the new record (`retry_of`)."""
    settings = app_state(request, "settings", ScrapingSettings)
    _validate(body, settings)
    if idempotency_key is not None:
        Idempotency.check_key(idempotency_key)
    if body.openai_key is None:
        budget = ServerKeyBudget(request.app.state.redis, settings.openai_server_key_daily_tokens_per_user)
        try:
            await budget.check(user.sub)
        except BudgetExceeded as exc:
            raise TooManyRequests(
                str(exc), code="model_budget_exceeded", headers={"Retry-After": str(seconds_to_midnight())}
            ) from None
    vault = app_state(request, "key_vault", KeyVault)
    header_vault = app_state(request, "header_vault", KeyVault)
    key_ref = await vault.put(body.openai_key.get_secret_value()) if body.openai_key is not None else None
    plain_headers = _plain_headers(body)
    try:
        headers_ref = await seal_headers(header_vault, plain_headers) if plain_headers else None
    except BaseException:
        if key_ref is not None:
            await vault.delete(key_ref)
        raise
    kwargs: dict[str, Any] = {
        "url": body.url,
        "model": body.model,
        "owner": user.sub,
        "prompt": body.prompt.strip() if body.prompt else None,
        "schema": body.schema_,
        "max_age": body.max_age,
        "key_ref": key_ref,
        "include_selectors": check_selectors("include_selectors", body.include_selectors or []) or None,
        "exclude_selectors": check_selectors("exclude_selectors", body.exclude_selectors or []) or None,
        "headers_ref": headers_ref,
    }
    task_id = str(uuid.uuid4())
    # The fingerprint leaves the key and header values out: a repeat is the same request
    # whichever secrets it carries (the header names still count).
    fingerprint = body.model_dump(mode="json", exclude={"openai_key", "headers"}, by_alias=True)
    fingerprint["header_names"] = sorted(n.lower() for n in (plain_headers or {}))
    try:
        accepted = await submit_task(
            celery_app=request.app.state.celery,
            records=request.app.state.records,
            user=user,
            task_name=TASK_NAME,
            task_type="scraping",
            queue=QueueName.SCRAPING.value,
            kwargs=kwargs,
            secret_kwargs=frozenset({"key_ref", "headers_ref"}),
            idempotency=Idempotency(request.app.state.redis, "scraping"),
            idempotency_key=idempotency_key,
            fingerprint_body=[TASK_NAME, fingerprint],
            task_id=task_id,
            retry=retry or resolve_policy(body.retry, 1 + settings.scrape_task_max_retries),
            queue_timeout=body.queue_timeout_seconds,
            run_timeout=body.run_timeout_seconds,
            extra_record=extra_record,
        )
    except BaseException:
        if key_ref is not None:
            await vault.delete(key_ref)
        if headers_ref is not None:
            await header_vault.delete(headers_ref)
        raise
    if accepted["task_id"] != task_id:
        # A repeat: the earlier task holds its own references.
        if key_ref is not None:
            await vault.delete(key_ref)
        if headers_ref is not None:
            await header_vault.delete(headers_ref)
    return accepted
