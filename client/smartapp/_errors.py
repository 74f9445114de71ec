"""Exceptions raised for the platform's error envelope `{"error": {"code", "message", "request_id"}}`."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


class SmartappError(Exception):
    """Base of every error this package raises.

    `code` is the envelope's machine-readable code (`not_found`, `too_many_tasks`, ...),
    `request_id` the id to quote to an operator (it is in the platform's logs).
    """

    status_code: int | None = None
    default_code = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        request_id: str | None = None,
        status_code: int | None = None,
        detail: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.request_id = request_id
        if status_code is not None:
            self.status_code = status_code
        self.detail = detail
        self.retry_after = retry_after

    def __str__(self) -> str:
        rid = f" (request_id {self.request_id})" if self.request_id else ""
        return f"{self.code}: {self.message}{rid}"


class APIError(SmartappError):
    """The platform answered with an error status."""


class BadRequest(APIError):
    status_code = 400
    default_code = "bad_request"


class Unauthorized(APIError):
    """The token is missing, malformed, expired or wrongly signed."""

    status_code = 401
    default_code = "unauthorized"


class Forbidden(APIError):
    """The token is valid but lacks the scope this needs."""

    status_code = 403
    default_code = "forbidden"


class NotFound(APIError):
    """Unknown id, or another user's: the platform does not tell them apart."""

    status_code = 404
    default_code = "not_found"


class Conflict(APIError):
    status_code = 409
    default_code = "conflict"


class PreconditionFailed(APIError):
    """`412`: an `If-Match` / `If-None-Match` condition did not hold (someone else wrote first)."""

    status_code = 412
    default_code = "precondition_failed"


class PayloadTooLarge(APIError):
    status_code = 413
    default_code = "payload_too_large"


class ValidationError(APIError):
    """`422`: the request is well-formed but refused; `detail` names the fields when known."""

    status_code = 422
    default_code = "validation_error"


class RateLimited(APIError):
    """`429`, still refused after the client's own retries; `retry_after` in seconds."""

    status_code = 429
    default_code = "rate_limited"


class ServerError(APIError):
    status_code = 500
    default_code = "internal_error"


class ServiceUnavailable(ServerError):
    """`503`: a dependency is down, still so after the client's own retries."""

    status_code = 503
    default_code = "service_unavailable"


class TransportError(SmartappError):
    """The platform could not be reached (connection refused, reset, timed out)."""

    default_code = "transport_error"


class WaitTimeout(SmartappError, TimeoutError):
    """`wait(timeout=...)` ran out before the task finished."""

    default_code = "wait_timeout"


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    413: PayloadTooLarge,
    422: ValidationError,
    429: RateLimited,
    503: ServiceUnavailable,
}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from_response(response: httpx.Response) -> APIError:
    """The exception for an error answer, from its envelope (or what a proxy sent instead)."""
    code: str | None = None
    message = f"HTTP {response.status_code}"
    request_id = response.headers.get("X-Request-ID")
    detail: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = err.get("code") if isinstance(err.get("code"), str) else None
        message = str(err.get("message") or message)
        request_id = err.get("request_id") or request_id
        detail = err.get("detail", body.get("detail"))
    elif response.text:
        message = f"HTTP {response.status_code}: {response.text[:200]}"
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = ServerError if response.status_code >= 500 else APIError
    return cls(
        message,
        code=code,
        request_id=request_id,
        status_code=response.status_code,
        detail=detail,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )
