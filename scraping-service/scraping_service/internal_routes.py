"""Internal endpoints: for task-service's scheduler (validate a schedule's scrape, submit it for
the schedule's owner) and for task-service's replay of a failed scrape.

Not under API_PREFIX, so the gateway never routes them (it answers 404); each needs a service
credential (shared.service_caller: a 60 s token signed with a key derived from SECRET_KEY)
naming the owner, and each router accepts only its own purpose (`svc` claim): a scheduler's
credential cannot replay, a replay's cannot submit a schedule's run.

A schedule never holds secrets: `openai_key` and `headers` are refused, so a scheduled scrape
uses the server's key and its per-user daily budget. A replay is the owner's own request made
again: the key and headers it needs come in its body (they travel only on this internal call,
as on a user's request, and are sealed exactly as a new scrape's), since the original record
kept neither.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError

from shared import (
    Conflict,
    Forbidden,
    IdempotencyKey,
    Principal,
    QueueName,
    RecordsDep,
    Unprocessable,
    app_state,
    replay_refusal,
    service_caller,
)

from .routes import TASK_NAME, _validate, background_scraping, enqueue_scrape
from .schemas import ScrapeIn, ScrapeReplayIn
from .settings import ScrapingSettings

INTERNAL_PREFIX = "/internal/scheduler/background-scraping"
router = APIRouter(prefix=INTERNAL_PREFIX, include_in_schema=False)
Scheduler = Annotated[Principal, Depends(service_caller("scheduler"))]
REPLAY_PREFIX = "/internal/replay/background-scraping"
replay_router = APIRouter(prefix=REPLAY_PREFIX, include_in_schema=False)
Replayer = Annotated[Principal, Depends(service_caller("replay"))]
# The kept kwargs a scrape's body is rebuilt from (owner is the caller's; secrets were never kept).
REPLAYED_FIELDS = ("url", "model", "prompt", "schema", "max_age", "include_selectors", "exclude_selectors")


def _no_secrets(body: ScrapeIn) -> None:
    if body.openai_key is not None or body.headers:
        raise Unprocessable(
            "A schedule keeps no secrets: leave out openai_key and headers (a scheduled scrape "
            "uses the server's key and your daily budget on it).",
            code="secret_not_allowed_in_schedule",
        )


@router.post("/validate", status_code=204, response_class=Response)
async def validate_scrape(request: Request, body: ScrapeIn, owner: Scheduler) -> Response:
    """204 when POST /background-scraping/ would accept this body, else its own 422."""
    _no_secrets(body)
    _validate(body, app_state(request, "settings", ScrapingSettings))
    return Response(status_code=204)


@router.post("/", status_code=202)
async def submit_scrape(
    request: Request, body: ScrapeIn, owner: Scheduler, idempotency_key: IdempotencyKey = None
) -> dict[str, Any]:
    """POST /background-scraping/ as the owner (the scheduler sends schedule:{id}:{due})."""
    _no_secrets(body)
    return await background_scraping(request, body, owner, idempotency_key)


def _replayed_body(inputs: dict[str, Any], again: ScrapeReplayIn) -> ScrapeIn:
    kwargs = inputs.get("kwargs")
    if inputs.get("task_name") != TASK_NAME or not isinstance(kwargs, dict):
        raise Conflict("This task's inputs were not kept; submit it again.", code="inputs_not_kept")
    fields = {f: kwargs[f] for f in REPLAYED_FIELDS if kwargs.get(f) is not None}
    try:
        body = ScrapeIn.model_validate(
            {
                **fields,
                "queue_timeout_seconds": inputs.get("queue_timeout"),
                "run_timeout_seconds": inputs.get("run_timeout"),
            }
        )
    except ValidationError:
        raise Conflict(
            "This task's kept inputs are no longer valid; submit it again.", code="inputs_not_kept"
        ) from None
    # The secrets go in after validation of the kept fields: a model's errors never quote them.
    return body.model_copy(update={"openai_key": again.openai_key, "headers": again.headers or None})


@replay_router.post("/{task_id}", status_code=202)
async def replay_scrape(
    request: Request, task_id: str, records: RecordsDep, owner: Replayer, body: ScrapeReplayIn | None = None
) -> dict[str, Any]:
    """Run a failed, revoked or expired scrape of the owner's again, as a new task whose record
    says `retry_of`: re-read from its record, checked as POST /background-scraping/ checks a
    new one (URL policy, model, the server key's budget), submitted the same way."""
    if not owner.has("scrape"):
        raise Forbidden("This needs the 'scrape' scope.")
    record = await records.get_for(owner, task_id)
    if record.get("queue") != QueueName.SCRAPING.value:
        raise Conflict("Only scrapes are replayed here.", code="replay_unsupported")
    status = (await records.status(record))["status"]
    again = body or ScrapeReplayIn()
    inputs: Any = record.get("inputs")  # a dict once replay_refusal lets it through
    refusal = replay_refusal(
        status, inputs, has_key=again.openai_key is not None, has_headers=bool(again.headers)
    )
    if refusal is not None:
        raise refusal
    scrape = _replayed_body(inputs, again)
    retry = inputs.get("retry") if isinstance(inputs.get("retry"), dict) else None
    accepted = await enqueue_scrape(
        request, scrape, owner, retry=retry, extra_record={"retry_of": record["task_id"]}
    )
    return {**accepted, "retry_of": record["task_id"]}
