"""`route`'s schema: a route behind a scope documents its 403 once, from the dependency itself,
and never by changing a `responses` dict that other routes may share."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI

from shared import CacheUser, CurrentUser, Principal, SendUser, route

SHARED_ANSWERS: dict[int | str, dict[str, Any]] = {503: {"description": "Redis is down."}}


def _answers() -> dict[str, Any]:
    router = APIRouter()

    @route(router, "GET", "/anyone/")
    async def anyone(user: CurrentUser) -> str:
        return user.sub

    @route(router, "GET", "/cache/", responses=SHARED_ANSWERS)
    async def cached(user: CacheUser) -> str:
        return user.sub

    @route(router, "POST", "/send/", responses={403: {"description": "Written by hand."}})
    async def send(user: SendUser) -> str:
        return user.sub

    @route(router, "GET", "/both/")
    async def both(user: CacheUser, sender: SendUser) -> list[Principal]:
        return [user, sender]

    app = FastAPI()
    app.include_router(router)
    paths = app.openapi()["paths"]
    return {path: op["responses"] for path, ops in paths.items() for op in ops.values()}


def test_a_route_behind_a_scope_documents_its_403_and_only_such_a_route() -> None:
    answers = _answers()
    assert "403" not in answers["/anyone/"]
    assert answers["/cache/"]["403"] == {"description": "The token lacks the 'cache' scope."}
    assert answers["/cache/"]["503"] == {"description": "Redis is down."}
    assert answers["/both/"]["403"]["description"] == "The token lacks the 'cache' and 'notify:send' scope."


def test_the_routes_own_403_wins_and_a_shared_responses_dict_is_left_alone() -> None:
    answers = _answers()
    assert answers["/send/"]["403"] == {"description": "Written by hand."}
    assert SHARED_ANSWERS == {503: {"description": "Redis is down."}}
