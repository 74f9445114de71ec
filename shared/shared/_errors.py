"""One error base carrying its status, one JSON envelope, one set of handlers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared._context import request_id_var

log = logging.getLogger("shared.errors")

DEPENDENCY_RETRY_AFTER = "5"


class AppError(Exception):
    status_code = 500
    code = "internal_error"
    message = "Something went wrong on our side."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        detail: Any = None,
    ) -> None:
        self.message = message or type(self).message
        self.code = code or type(self).code
        self.headers = headers or {}
        self.detail = detail
        super().__init__(self.message)


class BadRequest(AppError):
    status_code = 400
    code = "bad_request"
    message = "The request is malformed."


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"
    message = "A valid bearer token is required."

    def __init__(self, message: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        super().__init__(message, **kw)


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"
    message = "Your token lacks the scope this needs."


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    message = "Nothing here by that name."


class Conflict(AppError):
    status_code = 409
    code = "conflict"
    message = "This conflicts with an earlier request."


class PreconditionFailed(AppError):
    status_code = 412
    code = "precondition_failed"
    message = "A precondition of the request (If-Match, If-None-Match) does not hold."


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"
    message = "The request body is too large."


class Unprocessable(AppError):
    status_code = 422
    code = "validation_error"
    message = "The request is not valid."


class TooManyRequests(AppError):
    status_code = 429
    code = "rate_limited"
    message = "Too many requests; slow down."


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"
    message = "A dependency is unavailable; try again shortly."

    def __init__(self, message: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": DEPENDENCY_RETRY_AFTER})
        super().__init__(message, **kw)


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message, "request_id": request_id_var.get()}
    if detail is not None:
        err["detail"] = detail
    return {"error": err}


def error_response(exc: AppError) -> JSONResponse:
    headers = dict(exc.headers)
    rid = request_id_var.get()
    if rid:
        headers["X-Request-ID"] = rid
    return JSONResponse(
        error_body(exc.code, exc.message, exc.detail), status_code=exc.status_code, headers=headers
    )


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


def _dependency_error(exc: Exception) -> AppError:
    """The 503 for a dependency that is down, naming it when we can tell which."""
    import kombu.exceptions
    import redis.exceptions

    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        # Redis refused a write for lack of memory (maxmemory with noeviction): full, not broken.
        return ServiceUnavailable(
            "The store is out of memory and refuses writes for now; try again later.",
            code="redis_out_of_memory",
        )
    if isinstance(exc, redis.exceptions.RedisError):
        return ServiceUnavailable(
            "The cache and result store (Redis) is unavailable.", code="redis_unavailable"
        )
    if isinstance(exc, kombu.exceptions.OperationalError):
        return ServiceUnavailable("The message broker (RabbitMQ) is unavailable.", code="broker_unavailable")
    return ServiceUnavailable()


def install_error_handlers(app: FastAPI) -> None:
    async def on_app_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)
        return error_response(exc)

    async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else "The request failed."
        err = AppError(message, code=code, headers=dict(exc.headers or {}))
        err.status_code = exc.status_code
        return error_response(err)

    async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        detail = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = detail[0] if detail else None
        where = ".".join(str(p) for p in first["loc"] if p != "body") if first else ""
        message = f"{where}: {first['msg']}" if first and where else "The request is not valid."
        return error_response(Unprocessable(message, detail=detail))

    async def on_unhandled(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(AppError())

    async def on_dependency_error(_: Request, exc: Exception) -> JSONResponse:
        mapped = _dependency_error(exc)
        log.warning("dependency unavailable: %s", type(exc).__name__)
        return error_response(mapped)

    import kombu.exceptions
    import redis.exceptions

    # Registered by class so the inner exception middleware answers them (a handler for bare
    # Exception runs in the outermost middleware, which re-raises after answering).
    for dependency_error in (
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        redis.exceptions.BusyLoadingError,
        redis.exceptions.ReadOnlyError,
        redis.exceptions.OutOfMemoryError,
        kombu.exceptions.OperationalError,
        ConnectionError,
        TimeoutError,
    ):
        app.add_exception_handler(dependency_error, on_dependency_error)
    app.add_exception_handler(AppError, on_app_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unhandled)
