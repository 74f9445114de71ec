"""Schedule targets whose checks and submission live in their own services, and the replay of
a failed scrape.

`background-scraping` (scraping-service seals keys, spends the server key's budget) and
`send-notification` (notification-service files the inbox, holds `send_at`) are validated and
submitted through each service's internal endpoints (not routed by the gateway), with a service
credential (shared.mint_service_token: 60 s, signed with a key derived from SECRET_KEY) naming
the owner. The target's own 4xx (its code and message) reaches the schedule's creator as is.

A scrape is replayed by scraping-service too (it owns the `scraping` queue and the sealing of
secrets): `replay_remote` calls its internal replay endpoint with a credential of purpose
`replay` (a scheduler's credential is refused there), passing on the key and headers the user
sent again. Its answer, 202 or error (with Retry-After), reaches the user as is.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from shared import (
    SERVICE_TOKEN_HEADER,
    AppError,
    Principal,
    ServiceUnavailable,
    TooManyRequests,
    Unprocessable,
    mint_service_token,
)
from task_service.settings import TaskSettings

REMOTE_TARGETS = ("background-scraping", "send-notification")
# Fields of a target body that carry a user's secret: never kept in a schedule.
SECRET_FIELDS = {"background-scraping": ("openai_key", "headers")}
PASSED_THROUGH = {403, 413, 422, 429}
REPLAY_PASSED_THROUGH = {403, 404, 409, 413, 422, 429}
TIMEOUT = httpx.Timeout(10.0, connect=3.0)


class TargetRefused(AppError):
    """The target service's own refusal, with its status and code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, code=code, detail=detail, headers=headers)
        self.status_code = status


def check_no_secrets(path: str, body: dict[str, Any]) -> None:
    found = [f for f in SECRET_FIELDS.get(path, ()) if body.get(f)]
    if found:
        raise Unprocessable(
            f"A schedule keeps no secrets: leave out {', '.join(found)} (a scheduled scrape uses "
            "the server's key and your daily budget on it).",
            code="secret_not_allowed_in_schedule",
        )


def run_scopes(path: str, body: dict[str, Any], owner: str) -> set[str]:
    """The scopes a run acts with: what the target endpoint asks of this body (checked when the
    schedule was made or its target last edited)."""
    if path == "background-scraping":
        return {"scrape"}
    return set() if body.get("user_id") == owner else {"notify:send"}


def _url(settings: TaskSettings, path: str, validate: bool) -> str:
    base = (
        settings.scraping_service_url if path == "background-scraping" else settings.notification_service_url
    )
    return f"{base.rstrip('/')}/internal/scheduler/{path}/{'validate' if validate else ''}"


async def _call(
    settings: TaskSettings,
    path: str,
    body: dict[str, Any],
    user: Principal,
    scopes: set[str],
    *,
    validate: bool,
    idempotency_key: str | None = None,
) -> httpx.Response:
    headers = {SERVICE_TOKEN_HEADER: mint_service_token(settings, user.sub, scopes, "scheduler")}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            r = await client.post(_url(settings, path, validate), json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"The {path} service could not be reached ({type(exc).__name__}).") from None
    if r.status_code < 300:
        return r
    if r.status_code in PASSED_THROUGH:
        try:
            err = r.json()["error"]
            raise TargetRefused(r.status_code, str(err["code"]), str(err["message"]), err.get("detail"))
        except (ValueError, KeyError, TypeError):
            pass
    raise ServiceUnavailable(f"The {path} service answered {r.status_code}.")


async def validate_remote(path: str, body: dict[str, Any], user: Principal, settings: TaskSettings) -> None:
    """204 from the target's own checks, or its 4xx passed through."""
    check_no_secrets(path, body)
    wanted = {"scrape"} if path == "background-scraping" else {"notify:send"}
    await _call(settings, path, body, user, {s for s in wanted if user.has(s)}, validate=True)


async def submit_remote(
    path: str, body: dict[str, Any], owner: str, settings: TaskSettings, idempotency_key: str
) -> str | None:
    """Submit one run as `owner`; the task id the target answered (None: a held send_at)."""
    check_no_secrets(path, body)
    user = Principal(sub=owner, scopes=frozenset())
    r = await _call(
        settings,
        path,
        body,
        user,
        run_scopes(path, body, owner),
        validate=False,
        idempotency_key=idempotency_key,
    )
    try:
        task_id = r.json().get("task_id")
    except (ValueError, AttributeError):
        return None
    return task_id if isinstance(task_id, str) else None


def _replay_error(r: httpx.Response) -> AppError:
    """scraping-service's refusal of a replay, as the user's answer: status, code, message and
    Retry-After kept; anything unexpected (a 401: the services disagree on SECRET_KEY) is a 503."""
    retry_after = r.headers.get("Retry-After")
    headers = {"Retry-After": retry_after} if retry_after else None
    try:
        err = r.json()["error"]
        code, message, detail = str(err["code"]), str(err["message"]), err.get("detail")
    except (ValueError, KeyError, TypeError):
        return ServiceUnavailable(f"The scraping service answered {r.status_code}.")
    if r.status_code == 429:
        return TooManyRequests(message, code=code, headers=headers, detail=detail)
    if r.status_code in REPLAY_PASSED_THROUGH:
        return TargetRefused(r.status_code, code, message, detail, headers)
    if r.status_code == 503:
        return ServiceUnavailable(message, code=code, **({"headers": headers} if headers else {}))
    return ServiceUnavailable(f"The scraping service answered {r.status_code}.")


async def replay_remote(
    settings: TaskSettings, user: Principal, task_id: str, secrets: dict[str, Any]
) -> dict[str, Any]:
    """Replay the failed scrape `task_id` as `user` through scraping-service: its 202 body
    (`task_id`, `retry_of`, ...) or its refusal. `secrets`: openai_key / headers sent again, in
    the clear only on this loopback-or-cluster call; never logged here."""
    scopes = {s for s in ("scrape", "admin") if s in user.scopes}
    headers = {SERVICE_TOKEN_HEADER: mint_service_token(settings, user.sub, scopes, "replay")}
    url = f"{settings.scraping_service_url.rstrip('/')}/internal/replay/background-scraping/{quote(task_id, safe='')}"
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            r = await client.post(url, json=secrets, headers=headers)
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(
            f"The background-scraping service could not be reached ({type(exc).__name__})."
        ) from None
    if r.status_code != 202:
        raise _replay_error(r)
    try:
        accepted = r.json()
    except ValueError:
        raise ServiceUnavailable("The scraping service answered 202 without a body.") from None
    if not isinstance(accepted, dict) or not isinstance(accepted.get("task_id"), str):
        raise ServiceUnavailable("The scraping service answered 202 without a task id.")
    return accepted
