"""Which URLs the platform may fetch: the URL-shape check, checked resolution, the errors.

The rules, in the order a request meets them:

1. `check_url` (pure, no DNS) refuses anything that is not a plain http(s) URL with a
   well-formed host, and any host that is an IP literal (see `_ip_policy`) whose address
   is not globally routable.
2. A host name is resolved once per connection (`resolve_checked`); *every* address must
   pass, and the connection goes to a checked address (`_http_client` wires this into the
   connector). A DNS answer that changes between check and connect is never consulted.
3. Redirects are followed by hand, each hop going through 1 and 2 again.

`OUTBOUND_ALLOWLIST` entries (`host`, `host:port`, `[v6]:port`) may be reached even
though they are private; `allow_private=True` (SCRAPE_ALLOW_PRIVATE) turns the address
rules off entirely, except for cloud metadata. URL-shape rules always apply.

Exceptions, all carrying a `.reason` that is safe to show the user who supplied the URL:
`OutboundError` (base) > `OutboundRefused` (policy; retrying will not help) >
`BodyTooLarge`; `OutboundTimeout` and `OutboundUnreachable` (network; may be retried).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import httpx

from shared._ip_policy import (
    _LOOPBACKS,
    Allowlist,
    IPAddress,
    _normalise_name,
    forbidden_reason,
    parse_ip_literal,
)

__all__ = [
    "BodyTooLarge",
    "CheckedURL",
    "OutboundError",
    "OutboundRefused",
    "OutboundTimeout",
    "OutboundUnreachable",
    "check_url",
    "resolve_checked",
]

MAX_URL_LENGTH: Final = 2048

# --------------------------------------------------------------------------- errors


class OutboundError(Exception):
    """An outbound request produced no usable response; `reason` is safe to show a user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutboundRefused(OutboundError):
    """Refused by policy (bad URL, forbidden address, redirect rules); do not retry."""


class BodyTooLarge(OutboundRefused):
    """The response body went past `max_bytes`; it was aborted, not truncated."""


class OutboundTimeout(OutboundError):
    """The total deadline, or a per-operation timeout, passed."""


class OutboundUnreachable(OutboundError):
    """Name resolution, connection or the HTTP exchange failed."""


# ------------------------------------------------------------------------ URL check

_CONTROL_OR_SPACE: Final = re.compile(r"[\x00-\x20\x7f-\x9f]")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class CheckedURL:
    """A URL that passed `check_url`. `host` is ASCII, lower case, without brackets."""

    url: httpx.URL
    host: str
    port: int
    ip: IPAddress | None  # set when the host is an IP literal (already judged)
    allowlisted: bool

    @property
    def scheme(self) -> str:
        return self.url.scheme

    def __str__(self) -> str:
        return str(self.url)


def check_url(
    url: str | httpx.URL, allowlist: Allowlist | None = None, *, allow_private: bool = False
) -> CheckedURL:
    """Validate the shape of `url` and any IP literal host, without DNS.

    Raises OutboundRefused. A host name still has to go through `resolve_checked`.
    """
    allowlist = allowlist or Allowlist()
    text = str(url)
    if len(text) > MAX_URL_LENGTH:
        raise OutboundRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if _CONTROL_OR_SPACE.search(text):
        raise OutboundRefused("the URL contains whitespace or control characters")
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise OutboundRefused("not a valid URL") from exc
    if parsed.scheme not in _DEFAULT_PORTS:
        raise OutboundRefused("only http and https URLs are allowed")
    if parsed.userinfo:
        raise OutboundRefused("URLs with credentials (user@host) are not allowed")
    raw_host = parsed.raw_host.decode("ascii")
    if not raw_host:
        raise OutboundRefused("the URL has no host")
    port = parsed.port if parsed.port is not None else _DEFAULT_PORTS[parsed.scheme]
    if not 0 < port < 65536:
        raise OutboundRefused("the URL has an invalid port")

    ip: IPAddress | None
    if ":" in raw_host:
        if "%" in raw_host:
            raise OutboundRefused("IPv6 zone identifiers are not allowed")
        ip = parse_ip_literal(raw_host)
        if ip is None:
            raise OutboundRefused("the URL has an invalid host")
        host = str(ip)
    else:
        name = _normalise_name(raw_host)
        if name is None:
            raise OutboundRefused("the URL has an invalid host")
        ip = parse_ip_literal(name)
        host = str(ip) if ip is not None else name

    allowlisted = allowlist.allows(ip if ip is not None else host, port)
    if not allowlisted:
        # allow_private opens private ranges, never the cloud metadata endpoint.
        reason = forbidden_reason(ip) if ip is not None else None
        if reason is not None and (not allow_private or reason == "metadata"):
            raise OutboundRefused(f"the URL points to a forbidden address ({reason})")
        # RFC 6761: these never leave the machine, whatever a resolver says.
        if (
            not allow_private
            and (host == "localhost" or host.endswith(".localhost"))
            and not any(allowlist.allows(lo, port) for lo in _LOOPBACKS)
        ):
            raise OutboundRefused("the URL points to a forbidden address (loopback)")

    # Canonical host (numeric forms spelled as dotted quads, no trailing dot), no fragment.
    canonical = parsed.copy_with(host=host, fragment=None)
    return CheckedURL(url=canonical, host=host, port=port, ip=ip, allowlisted=allowlisted)


# ----------------------------------------------------------------------- resolution


def _sockaddr_ip(sockaddr: tuple[Any, ...]) -> IPAddress | None:
    text = str(sockaddr[0]).split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _vet_addresses(
    host: str,
    port: int,
    addresses: Iterable[IPAddress],
    allowlist: Allowlist,
    allow_private: bool,
) -> list[IPAddress]:
    unique = list(dict.fromkeys(addresses))
    if not unique:
        raise OutboundUnreachable(f"could not resolve {host}")
    if allowlist.allows(host, port):
        return unique
    for ip in unique:
        reason = forbidden_reason(ip)
        if reason is None or (allow_private and reason != "metadata"):
            continue
        if not allowlist.allows(ip, port):
            raise OutboundRefused(f"{host} resolves to a forbidden address ({reason})")
    return unique


def _infos_to_ips(infos: Iterable[tuple[Any, ...]]) -> list[IPAddress]:
    ips = (_sockaddr_ip(info[4]) for info in infos)
    return [ip for ip in ips if ip is not None]


async def _getaddrinfo(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise OutboundUnreachable(f"could not resolve {host}") from exc
    return _infos_to_ips(infos)


async def resolve_checked(
    host: str, port: int, allowlist: Allowlist | None = None, allow_private: bool = False
) -> list[IPAddress]:
    """Resolve `host` with the event loop's getaddrinfo; every address must pass.

    Returns the addresses to connect to, in resolver order. Raises OutboundRefused when
    any address is forbidden, OutboundUnreachable when the name does not resolve.
    """
    literal = parse_ip_literal(host)
    found = [literal] if literal is not None else await _getaddrinfo(host, port)
    return _vet_addresses(host, port, found, allowlist or Allowlist(), allow_private)
