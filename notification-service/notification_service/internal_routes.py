"""Internal endpoints for task-service's scheduler: validate a schedule's notification, and send
it for the schedule's owner.

Not under API_PREFIX, so the gateway never routes them (it answers 404); each needs a service
credential (shared.service_caller: a 60 s token signed with a key derived from SECRET_KEY)
naming the owner and the scopes the owner had when the schedule was made.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from notification_service.routes_send import Sender, require_send, send_notification
from notification_service.schemas import NotificationIn
from shared import IdempotencyKey, Principal, service_caller

INTERNAL_PREFIX = "/internal/scheduler/send-notification"
router = APIRouter(prefix=INTERNAL_PREFIX, include_in_schema=False)
Scheduler = Annotated[Principal, Depends(service_caller("scheduler"))]


@router.post("/validate", status_code=204, response_class=Response)
async def validate_notification(request: Request, body: NotificationIn, owner: Scheduler) -> Response:
    """204 when POST /send-notification/ would accept this body, else its own 422 or 403."""
    require_send(owner, {body.user_id})
    Sender(request, owner, None).check(body, time.time(), "", task_id="validate-only")
    return Response(status_code=204)


@router.post("/", status_code=202)
async def submit_notification(
    request: Request, body: NotificationIn, owner: Scheduler, idempotency_key: IdempotencyKey = None
) -> dict[str, Any]:
    """POST /send-notification/ as the owner (the scheduler sends schedule:{id}:{due})."""
    return await send_notification(body, Sender(request, owner, idempotency_key))
