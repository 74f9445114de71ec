"""A user's own request headers (a login cookie, say): checked at submission, sealed in transit.

They are secrets exactly as the OpenAI key is (keyvault.py): the API seals them as one JSON
object in the vault under a short-lived reference with its own HKDF purpose, only the
reference goes on the broker, the worker opens it, registers every value with the log
scrubber, and deletes it when the task ends. They are sent only to the submitted URL's origin
(shared's `origin_headers`), never to robots.txt, and a result made with them is never cached.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import orjson

from .keyvault import KeyVault, KeyVaultError

__all__ = [
    "HEADERS_PURPOSE",
    "MAX_HEADERS",
    "MAX_HEADER_NAME_CHARS",
    "MAX_HEADER_VALUE_CHARS",
    "HeaderError",
    "check_headers",
    "open_headers",
    "seal_headers",
    "secret_values",
]

HEADERS_PURPOSE = "smart_application/scraping/request-headers/v1"
MAX_HEADERS = 10
MAX_HEADER_NAME_CHARS = 64
MAX_HEADER_VALUE_CHARS = 4096

# RFC 9110 token characters.
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Visible ASCII, space and tab: no CR/LF (header injection), no other control characters.
_VALUE_RE = re.compile(r"^[\t\x20-\x7e]*$")
# Framing, hop-by-hop and routing headers that the fetcher owns, and ones that would change who
# we say we are (User-Agent is what robots.txt rules are written against).
REFUSED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "via",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
        "content-type",
        "content-encoding",
        "user-agent",
        "http2-settings",
    }
)


class HeaderError(ValueError):
    """A header that may not be sent; the message names it but never quotes its value."""


def check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Validate a user's headers; return them as given. Raise HeaderError naming the problem."""
    if len(headers) > MAX_HEADERS:
        raise HeaderError(f"headers may hold at most {MAX_HEADERS} entries.")
    seen: set[str] = set()
    for name, value in headers.items():
        if not name or len(name) > MAX_HEADER_NAME_CHARS or not _TOKEN_RE.match(name):
            raise HeaderError(
                f"header names must be HTTP tokens of at most {MAX_HEADER_NAME_CHARS} characters; "
                f"{name[:MAX_HEADER_NAME_CHARS]!r} is not."
            )
        lower = name.lower()
        if lower in REFUSED_HEADERS or lower.startswith(("proxy-", "sec-", ":")):
            raise HeaderError(f"header {name!r} may not be set; the fetcher controls it.")
        if lower in seen:
            raise HeaderError(f"header {name!r} is given twice.")
        seen.add(lower)
        if len(value) > MAX_HEADER_VALUE_CHARS:
            raise HeaderError(f"header {name!r} is longer than {MAX_HEADER_VALUE_CHARS} characters.")
        if not _VALUE_RE.match(value):
            raise HeaderError(f"header {name!r} holds characters a header value may not hold.")
    return dict(headers)


def secret_values(headers: Mapping[str, str]) -> list[str]:
    """What to scrub: each value, and each cookie's own value (a page may echo just that)."""
    values = set(headers.values())
    for name, value in headers.items():
        if name.lower() == "cookie":
            for pair in value.split(";"):
                _, _, cookie = pair.partition("=")
                values.add(cookie.strip())
    return sorted((v for v in values if v), key=len, reverse=True)


async def seal_headers(vault: KeyVault, headers: Mapping[str, str]) -> str:
    """Store the headers encrypted; return the reference to publish instead of them."""
    return await vault.put(orjson.dumps(dict(headers)).decode())


async def open_headers(vault: KeyVault, ref: str) -> dict[str, str]:
    try:
        raw = await vault.get(ref)
    except KeyVaultError:
        raise KeyVaultError(
            "The request headers for this task have expired or were already used; submit them again."
        ) from None
    loaded = orjson.loads(raw)
    if not isinstance(loaded, dict):
        raise KeyVaultError("The stored request headers are malformed.")
    return {str(k): str(v) for k, v in loaded.items()}
