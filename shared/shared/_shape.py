"""The shape of a request, checked before any parser sees it: headers and JSON bodies.

Why before parsing: `json.loads` recurses once per nesting level, so a 1 MiB body of `[`
raises RecursionError (a 500) inside FastAPI, and orjson (which stores and re-serialises
every value) refuses nesting past 254 levels and integers past 64 bits, again as 500s far from
the request. Checking the raw bytes here answers each of these with a clear 422 at the door,
for every route of every service, whatever its schema says the body holds.

The checks run in C (regex, bytes.translate, bytes.replace) and never recurse, so a hostile
body costs a few linear passes, not a stack.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import orjson
from fastapi import Header
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared._errors import AppError, BadRequest, Unprocessable, error_body

# API.md "Request shape": JSON nested deeper than this is 422.
MAX_JSON_DEPTH = 32
# Integers are kept as orjson keeps them: a signed 64-bit value, as most JSON readers do.
MIN_JSON_INT = -(2**63)
MAX_JSON_INT = 2**63 - 1
# One header value other than Authorization (whose token JWT_MAX_LENGTH bounds).
MAX_HEADER_VALUE_BYTES = 8 * 1024

# A run of 19 digits or more (outside strings): the only integers that may not fit in 64 bits.
_LONG_DIGITS = re.compile(rb"[0-9]{19,}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_EMPTY_PAIR = re.compile(rb"\[\]|\{\}")
_JSON_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


# What the OpenAPI document states for values the code checks itself (its error codes stay its
# own): a generator of requests from the schema then sends what the API accepts.
HTTP_URL_PATTERN = r"^https?://[a-z0-9-]+(\.[a-z0-9-]+)+(/[!-~]*)?$"
IDEMPOTENCY_KEY_SCHEMA: dict[str, Any] = {"minLength": 1, "maxLength": 200, "pattern": "^[!-~]+$"}
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Repeat a submission with the same key to get the same task back "
        "(1-200 printable characters).",
        json_schema_extra=IDEMPOTENCY_KEY_SCHEMA,
    ),
]


class HeadersTooLarge(AppError):
    status_code = 431
    code = "headers_too_large"
    message = "A request header is too large."


def strip_strings(body: bytes) -> bytes:
    """The JSON text without its string literals (keys and values), for the scans below.

    Escaped backslashes go first, then escaped quotes, so every quote left opens or closes a
    string and the text between pairs of them is string content (as a JSON lexer reads it).
    """
    if b'"' not in body:
        return body
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(body.split(b'"')[::2])


def json_depth_exceeds(text: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when JSON text (strings stripped) nests arrays/objects deeper than `limit`.

    Each pass removes the innermost empty pairs (one level, as re.sub never rescans its own
    output), so a text of depth d is empty after d passes. Brackets that never pair up are not
    JSON at all: the text is refused as well, since a parser would recurse into it first.
    """
    brackets = text.translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return False
        shorter = _EMPTY_PAIR.sub(b"", brackets)
        if len(shorter) == len(brackets):
            return True  # unbalanced: invalid JSON, refused before a parser recurses into it
        brackets = shorter
    return bool(brackets)


def json_int_out_of_range(text: bytes) -> bool:
    """True when an integer literal of JSON text (strings stripped) does not fit in 64 bits."""
    for match in _LONG_DIGITS.finditer(text):
        start, end = match.span()
        before = text[start - 1 : start] if start else b""
        if before in {b".", b"e", b"E", b"+"} or text[end : end + 1] in {b".", b"e", b"E"}:
            continue  # a fraction or an exponent: a float, which every reader keeps
        if before == b"-" and start >= 2 and text[start - 2 : start - 1] in {b"e", b"E"}:
            continue  # a negative exponent
        value = int(match.group())
        if before == b"-":
            value = -value
        if not MIN_JSON_INT <= value <= MAX_JSON_INT:
            return True
    return False


def check_json_shape(body: bytes) -> None:
    """Raise a 422 for JSON nested deeper than MAX_JSON_DEPTH or holding an integer past 64 bits."""
    text = strip_strings(body)
    if json_depth_exceeds(text):
        raise Unprocessable(
            f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.", code="json_too_deep"
        )
    if json_int_out_of_range(text):
        raise Unprocessable(
            f"Integers must lie between {MIN_JSON_INT} and {MAX_JSON_INT} (64 bits).",
            code="integer_out_of_range",
        )


def check_headers(headers: list[tuple[bytes, bytes]]) -> None:
    """Exactly one Authorization header at most, and no header value past the cap.

    Two Authorization headers let one component read the first and another the last: one user
    is charged and another acts. Refusing both is the only answer every reader agrees on.
    """
    authorizations = 0
    for name, value in headers:
        if name == b"authorization":
            # Its length is the verifier's to judge (JWT_MAX_LENGTH, a 401 that says so).
            authorizations += 1
        elif len(value) > MAX_HEADER_VALUE_BYTES:
            raise HeadersTooLarge(f"A request header is longer than {MAX_HEADER_VALUE_BYTES} bytes.")
    if authorizations > 1:
        raise BadRequest("Send exactly one Authorization header.", code="duplicate_authorization")


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True  # FastAPI reads a body without Content-Type as JSON too


async def _send_error(send: Send, exc: AppError) -> None:
    body = orjson.dumps(error_body(exc.code, exc.message, exc.detail))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestShapeMiddleware:
    """Refuses malformed headers and over-deep or out-of-range JSON before the app parses it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        try:
            check_headers(headers)
        except AppError as exc:
            await _send_error(send, exc)
            return
        if scope["method"] not in _JSON_BODY_METHODS or not _is_json(headers):
            await self.app(scope, receive, send)
            return
        # The whole body is read here; FastAPI would read it whole as well before parsing.
        parts: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            parts.append(message.get("body", b""))
            more = bool(message.get("more_body", False))
        body = b"".join(parts)
        try:
            check_json_shape(body)
        except AppError as exc:
            await _send_error(send, exc)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body}], receive), send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive
