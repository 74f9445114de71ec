"""Internal endpoints for task-service's scheduler: validate a schedule's scrape, and submit it
for the schedule's owner.

Not under API_PREFIX, so the gateway never routes them (it answers 404); each needs a service
credential (shared.service_caller: a 60 s token signed with a key derived from SECRET_KEY)
naming the owner. A schedule never holds secrets: `openai_key` and `headers` are refused, so a
scheduled scrape uses the server's key and its per-user daily budget.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from shared import IdempotencyKey, Principal, Unprocessable, app_state, service_caller

from .routes import _validate, background_scraping
from .schemas import ScrapeIn
from .settings import ScrapingSettings

INTERNAL_PREFIX = "/internal/scheduler/background-scraping"
router = APIRouter(prefix=INTERNAL_PREFIX, include_in_schema=False)
Scheduler = Annotated[Principal, Depends(service_caller("scheduler"))]


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
