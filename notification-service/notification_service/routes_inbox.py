"""The inbox routes: pages of your notifications, read marks, and the live stream (SSE)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from notification_service import state
from notification_service.inbox import inbox_channel, sse_event
from notification_service.schemas import InboxPage, ReadResult
from shared import (
    API_PREFIX,
    STREAM_RESPONSES,
    CurrentUser,
    EventsDep,
    NotFound,
    Signal,
    Unprocessable,
    route,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix=API_PREFIX, tags=["notifications"])
SSE_BATCH = 100
MAX_SEQ = 2**63 - 1
SSE_KEEPALIVE_SECONDS = 15.0


@route(router, "GET", "/inbox/", response_model=InboxPage)
async def inbox_page(
    request: Request,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[int | None, Query(ge=0, description="`next_before` of the last page.")] = None,
    unread: Annotated[bool, Query(description="Only unread notifications.")] = False,
) -> dict[str, Any]:
    """Your notifications, newest first, with the number still unread."""
    return await state.inbox(request).page(user.sub, limit=limit, before=before, unread_only=unread)


@route(router, "POST", "/inbox/{notification_id}/read", response_model=ReadResult)
async def mark_read(request: Request, notification_id: str, user: CurrentUser) -> dict[str, Any]:
    """Mark one notification of your inbox as read."""
    inbox = state.inbox(request)
    if await inbox.mark_read(user.sub, notification_id) is None:
        raise NotFound("No such notification in your inbox.", code="notification_not_found")
    return {
        "notification_id": notification_id,
        "read": True,
        "unread_count": await inbox.unread_count(user.sub),
    }


@route(router, "POST", "/inbox/read-all", response_model=ReadResult)
async def mark_all_read(request: Request, user: CurrentUser) -> dict[str, Any]:
    """Mark every notification of your inbox as read."""
    await state.inbox(request).mark_all_read(user.sub)
    return {"read": True, "unread_count": 0}


@route(router, "GET", "/inbox/stream", responses=STREAM_RESPONSES)
async def inbox_stream(
    request: Request,
    user: CurrentUser,
    events: EventsDep,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=19,
            pattern="^[0-9]+$",
            description="The inbox seq to resume after (an event id this stream sent).",
        ),
    ] = None,
    since: Annotated[int | None, Query(ge=0, le=MAX_SEQ, description="Resume after this seq.")] = None,
) -> StreamingResponse:
    """Server-sent events: each new notification of your inbox as `event: notification`.

    The event id is the inbox `seq`; reconnecting with `Last-Event-ID` resumes after it,
    so nothing is missed. Without it the stream starts with what arrives next.
    """
    inbox = state.inbox(request)
    start: int | None = since
    if last_event_id is not None:
        raw = last_event_id.strip()
        if not raw.isdigit() or len(raw) > len(str(MAX_SEQ)) or int(raw) > MAX_SEQ:
            raise Unprocessable("Last-Event-ID must be an inbox seq number.", code="invalid_event_id")
        start = int(raw)
    cursor = start if start is not None else await inbox.last_seq(user.sub)

    async def events_() -> AsyncIterator[bytes]:
        # Push, not poll: landing a notification PUBLISHes on the user's channel, and the
        # process's one subscriber (shared.EventHub) wakes this stream. An idle stream costs
        # Redis nothing but a re-read per keep-alive, which bounds any missed wake-up.
        nonlocal cursor
        try:
            async with events.listen(inbox_channel(user.sub)) as listener:
                yield b"retry: 2000\n\n"
                while True:
                    items = await inbox.after(user.sub, cursor, limit=SSE_BATCH)
                    for item in items:
                        cursor = max(cursor, int(item["seq"]))
                        yield sse_event(item)
                    if len(items) == SSE_BATCH:
                        continue  # more waiting
                    if await listener.get(SSE_KEEPALIVE_SECONDS) is Signal.TIMEOUT:
                        yield b": keep-alive\n\n"
        except (TimeoutError, RedisError, OSError) as exc:
            # Redis went away mid-stream: end it; the client reconnects with Last-Event-ID.
            log.warning("inbox stream ended early: %s", type(exc).__name__)

    return StreamingResponse(
        events_(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
