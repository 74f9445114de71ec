"""Routes that answer with and without a trailing slash, directly: a redirected POST loses its body;
and that document the 403 of the scope their caller needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter
from fastapi.routing import APIRoute

from shared._auth import scopes_required

F = TypeVar("F", bound=Callable[..., Any])


def route(router: APIRouter, method: str, path: str, **kwargs: Any) -> Callable[[F], F]:
    """Register `path` and its slash twin for `method`; only the canonical one is in the schema."""
    canonical = path if path.endswith("/") or "{" in path.rsplit("/", 1)[-1] else path + "/"
    twin = canonical.rstrip("/") if canonical.endswith("/") else canonical + "/"

    def decorator(func: F) -> F:
        router.add_api_route(canonical, func, methods=[method], **kwargs)
        added = router.routes[-1]
        assert isinstance(added, APIRoute)
        scopes = " and ".join(f"'{scope}'" for scope in sorted(scopes_required(added.dependant)))
        if scopes:  # a new dict: the route's own may be a constant other routes share
            added.responses = {
                403: {"description": f"The token lacks the {scopes} scope."},
                **added.responses,
            }
        alias = {k: v for k, v in kwargs.items() if k not in {"summary", "description"}}
        alias["include_in_schema"] = False
        router.add_api_route(twin, func, methods=[method], **alias)
        return func

    return decorator
