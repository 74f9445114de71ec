"""The gateway's own errors, answered in the platform's JSON error envelope from raw ASGI."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from starlette.types import Message, Send

from shared import AppError, error_body


class BadGateway(AppError):
    status_code = 502
    code = "bad_gateway"
    message = "The service answered badly; try again."


class GatewayTimeout(AppError):
    status_code = 504
    code = "upstream_timeout"
    message = "The service did not answer in time."


class RequestTimeout(AppError):
    status_code = 408
    code = "request_timeout"
    message = "The request body did not arrive in time."


class HeadersTooLarge(AppError):
    status_code = 431
    code = "headers_too_large"
    message = "The request headers are too large."


class TooManyStreams(AppError):
    status_code = 429
    code = "too_many_streams"
    message = "You have too many event streams open; close one first."


def error_message(
    exc: AppError, extra_headers: Sequence[tuple[bytes, bytes]] = ()
) -> tuple[Message, Message]:
    body = orjson.dumps(error_body(exc.code, exc.message, exc.detail))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    for name, value in exc.headers.items():
        headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return (
        {"type": "http.response.start", "status": exc.status_code, "headers": headers},
        {"type": "http.response.body", "body": body},
    )


async def send_error(send: Send, exc: AppError, extra_headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    start, body = error_message(exc, extra_headers)
    await send(start)
    await send(body)
