"""Bytes to text: which media types we extract, and which charset a body is really in.

The charset comes from a byte-order mark, then the Content-Type header, then a <meta> or XML
declaration in the first 4 KiB, then UTF-8, then charset detection; a declaration that lies
falls through to the next step. Latin-1 means windows-1252, as browsers read it (WHATWG).
"""

from __future__ import annotations

import codecs
import enum
import re

import charset_normalizer

__all__ = ["ContentKind", "UnsupportedContentError", "classify_content_type", "decode_body"]


class ContentKind(enum.StrEnum):
    HTML = "html"
    XHTML = "xhtml"
    TEXT = "text"
    JSON = "json"


class UnsupportedContentError(Exception):
    """The body's media type is not one we extract (HTML, XHTML, plain text, JSON)."""


_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.I)
_XML_DECL_RE = re.compile(rb"""^<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_.\-]+)["']""")


def _mime(content_type: str | None) -> tuple[str, dict[str, str]]:
    if not content_type:
        return "", {}
    parts = content_type.split(";")
    params: dict[str, str] = {}
    for raw in parts[1:]:
        name, _, value = raw.partition("=")
        params[name.strip().lower()] = value.strip().strip('"').strip("'")
    return parts[0].strip().lower(), params


def classify_content_type(content_type: str | None, body: bytes = b"") -> ContentKind:
    """Map a Content-Type (sniffing the body when it is missing) to a kind we extract."""
    mime, _ = _mime(content_type)
    if mime in ("text/html", "application/html"):
        return ContentKind.HTML
    if mime in ("application/xhtml+xml",):
        return ContentKind.XHTML
    if mime == "application/json" or mime.endswith("+json") or mime == "text/json":
        return ContentKind.JSON
    if mime in ("text/plain", "text/markdown", "text/x-markdown"):
        return ContentKind.TEXT
    if mime in ("", "application/octet-stream"):
        head = body[:1024].lstrip().lower()
        if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
            return ContentKind.HTML
        if head.startswith((b"{", b"[")):
            return ContentKind.JSON
        if head and b"\x00" not in head:
            return ContentKind.TEXT
    raise UnsupportedContentError(
        f"The content type {mime or 'unknown'!r} is not supported; "
        "only HTML, XHTML, plain text and JSON pages can be scraped."
    )


def _valid_codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        codec = codecs.lookup(name.strip().lower())
    except LookupError:
        return None
    # The WHATWG rule: a page that declares latin-1 means windows-1252.
    if codec.name in ("latin-1", "iso8859-1", "ascii"):
        return "cp1252"
    return codec.name


def decode_body(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """Decode bytes to text; return (text, encoding used)."""
    for bom, name in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if body.startswith(bom):
            return body[len(bom) :].decode(name, errors="replace"), name
    _, params = _mime(content_type)
    declared = _valid_codec(params.get("charset"))
    if declared is None:
        head = body[:4096]
        match = _CHARSET_RE.search(head) or _XML_DECL_RE.search(head)
        if match:
            declared = _valid_codec(match.group(1).decode("ascii", "ignore"))
    if declared is not None:
        try:
            return body.decode(declared), declared
        except UnicodeDecodeError:
            pass  # the declaration lies; fall through to detection
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(body[:200_000]).best()
    if best is not None and best.encoding:
        name = _valid_codec(best.encoding) or "utf-8"
        return body.decode(name, errors="replace"), name
    return body.decode("cp1252", errors="replace"), "cp1252"
