"""Small parsers every outbound caller shares: a response's Retry-After, a URL's origin."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Final
from urllib.parse import urlsplit

__all__ = ["MAX_RETRY_AFTER_SECONDS", "origin_of", "parse_retry_after"]

# A longer Retry-After counts as this: a misconfigured server must not park work for days.
MAX_RETRY_AFTER_SECONDS: Final = 6 * 3600.0


def parse_retry_after(
    value: str | None, *, now: float | None = None, cap: float = MAX_RETRY_AFTER_SECONDS
) -> float | None:
    """Retry-After in seconds from now, clamped to [0, cap]; None when absent or malformed.

    RFC 9110 allows delta-seconds or an HTTP-date. A decimal fraction ("1.5") is accepted
    since some servers send one; a negative number or a date without a zone is not.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text[0].isdigit():
        try:
            seconds = float(text)
        except ValueError:
            seconds = None
        if seconds is not None and seconds == seconds:  # not NaN
            return min(seconds, cap)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return min(max(0.0, when.timestamp() - current), cap)


def origin_of(url: str) -> str:
    """RFC 6454 serialisation of a URL's origin: scheme://host[:port], default port left out."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or (scheme, port) in {("https", 443), ("http", 80)}:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"
