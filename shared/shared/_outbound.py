"""SSRF-safe outbound HTTP: scraping user URLs, webhook and push delivery, task callbacks.

The rules, in the order a request meets them:

1. `check_url` (pure, no DNS) refuses anything that is not a plain http(s) URL with a
   well-formed host, and any host that is an IP literal in any notation that
   getaddrinfo/inet_aton, curl or a browser would accept (decimal, octal, hex, short
   forms, bracketed IPv6, IPv4 embedded in IPv6) when that address is not globally
   routable.
2. A host name is resolved once per hop (`resolve_checked`); *every* address must pass,
   and the request is then sent to that checked address (URL host = IP, `Host` header =
   the name, TLS SNI and certificate check = the name). A DNS answer that changes between
   the check and the connect (rebinding) is never consulted.
3. Redirects are followed by hand, each hop going through 1 and 2 again.

`OUTBOUND_ALLOWLIST` entries (`host`, `host:port`, `[v6]:port`) may be reached even
though they are private; `allow_private=True` (SCRAPE_ALLOW_PRIVATE) turns the address
rules off entirely. URL-shape rules (scheme, credentials, length) always apply.

Exceptions, all carrying a `.reason` that is safe to show the user who supplied the URL:
`OutboundError` (base) > `OutboundRefused` (policy; retrying will not help) >
`BodyTooLarge`; `OutboundTimeout` and `OutboundUnreachable` (network; may be retried).
"""

from __future__ import annotations

import asyncio
import codecs
import email.message
import ipaddress
import json as jsonlib
import re
import socket
import time
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType
from typing import Any, Final, Self, TypeAlias

import httpx

__all__ = [
    "Allowlist",
    "BodyTooLarge",
    "CheckedURL",
    "IPAddress",
    "OutboundError",
    "OutboundRefused",
    "OutboundTimeout",
    "OutboundUnreachable",
    "SafeAsyncClient",
    "SafeClient",
    "SafeResponse",
    "check_url",
    "forbidden_reason",
    "parse_ip_literal",
    "resolve_checked",
    "resolve_checked_sync",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH: Final = 2048
DEFAULT_USER_AGENT: Final = "smart-application/0.1 (outbound)"


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


# ------------------------------------------------------------------- classification


def _v4(net: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(net)


def _v6(net: str) -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network(net)


# First match wins, so the specific entries (metadata, broadcast) come before their blocks.
_V4_RULES: Final[tuple[tuple[ipaddress.IPv4Network, str], ...]] = (
    (_v4("169.254.169.254/32"), "metadata"),  # AWS, GCP, Azure, OpenStack, DO
    (_v4("169.254.170.2/32"), "metadata"),  # ECS task credentials
    (_v4("100.100.100.200/32"), "metadata"),  # Alibaba Cloud
    (_v4("192.0.0.192/32"), "metadata"),  # Oracle Cloud
    (_v4("0.0.0.0/8"), "unspecified"),  # "this network"; Linux connects 0.0.0.0 to itself
    (_v4("127.0.0.0/8"), "loopback"),
    (_v4("10.0.0.0/8"), "private"),
    (_v4("172.16.0.0/12"), "private"),
    (_v4("192.168.0.0/16"), "private"),
    (_v4("169.254.0.0/16"), "link-local"),
    (_v4("100.64.0.0/10"), "cgnat"),
    (_v4("192.0.0.0/24"), "reserved"),  # IETF protocol assignments
    (_v4("192.0.2.0/24"), "documentation"),
    (_v4("198.51.100.0/24"), "documentation"),
    (_v4("203.0.113.0/24"), "documentation"),
    (_v4("198.18.0.0/15"), "benchmarking"),
    (_v4("192.88.99.0/24"), "reserved"),  # deprecated 6to4 relay anycast
    (_v4("224.0.0.0/4"), "multicast"),
    (_v4("255.255.255.255/32"), "broadcast"),
    (_v4("240.0.0.0/4"), "reserved"),
)

_V6_RULES: Final[tuple[tuple[ipaddress.IPv6Network, str], ...]] = (
    (_v6("::/128"), "unspecified"),
    (_v6("::1/128"), "loopback"),
    (_v6("fd00:ec2::254/128"), "metadata"),  # AWS IMDS over IPv6
    (_v6("fe80::/10"), "link-local"),
    (_v6("fec0::/10"), "private"),  # deprecated site-local
    (_v6("fc00::/7"), "private"),  # unique local
    (_v6("ff00::/8"), "multicast"),
    (_v6("2001:db8::/32"), "documentation"),
    (_v6("3fff::/20"), "documentation"),
    (_v6("2001:2::/48"), "benchmarking"),
    (_v6("100::/64"), "reserved"),  # discard-only
    (_v6("64:ff9b:1::/48"), "reserved"),  # local-use NAT64
)

_NAT64: Final = _v6("64:ff9b::/96")
_V4_TRANSLATED: Final = _v6("::ffff:0:0:0/96")
_V4_COMPATIBLE: Final = _v6("::/96")
_GLOBAL_UNICAST: Final = _v6("2000::/3")


def _low32(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why `ip` may not be reached from the platform, or None when it is globally routable.

    IPv6 forms that carry an IPv4 address (mapped, compatible, translated, NAT64, 6to4,
    Teredo) are judged by the IPv4 address they reach.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        for net, reason in _V4_RULES:
            if ip in net:
                return reason
        return None if ip.is_global else "reserved"

    ip = ipaddress.IPv6Address(int(ip))  # drop any zone id; it does not change the address
    if ip.ipv4_mapped is not None:
        return forbidden_reason(ip.ipv4_mapped)
    if ip in _NAT64:
        return forbidden_reason(_low32(ip))
    if ip in _V4_TRANSLATED:
        return forbidden_reason(_low32(ip)) or "reserved"
    if ip in _V4_COMPATIBLE and int(ip) > 1:
        return forbidden_reason(_low32(ip)) or "reserved"  # deprecated, never routed
    if ip.sixtofour is not None and (embedded := forbidden_reason(ip.sixtofour)) is not None:
        return embedded
    if ip.teredo is not None:
        server, client = ip.teredo
        return forbidden_reason(client) or forbidden_reason(server) or "reserved"
    for net6, reason in _V6_RULES:
        if ip in net6:
            return reason
    if ip not in _GLOBAL_UNICAST or not ip.is_global:
        return "reserved"
    return None


# ------------------------------------------------------------------ literal parsing

_HEX_PART: Final = re.compile(r"0[xX]([0-9a-fA-F]*)", re.ASCII)
_OCT_PART: Final = re.compile(r"0([0-7]*)", re.ASCII)
_DEC_PART: Final = re.compile(r"[1-9][0-9]*", re.ASCII)


def _inet_aton_part(text: str) -> int | None:
    # inet_aton/WHATWG number rules: 0x hex (a bare "0x" is 0), leading 0 octal, else decimal.
    if m := _HEX_PART.fullmatch(text):
        digits = m.group(1).lstrip("0")
        return int(digits, 16) if digits and len(digits) <= 8 else (0 if not digits else None)
    if m := _OCT_PART.fullmatch(text):
        digits = m.group(1).lstrip("0")
        return int(digits, 8) if digits and len(digits) <= 11 else (0 if not digits else None)
    if _DEC_PART.fullmatch(text) and len(text) <= 10:
        return int(text)
    return None


def _parse_ipv4(text: str) -> ipaddress.IPv4Address | None:
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        value = _inet_aton_part(part)
        if value is None:
            return None
        values.append(value)
    *head, last = values
    # The last part fills every byte the earlier parts did not: 127.1 is 127.0.0.1.
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = last
    for i, v in enumerate(head):
        number |= v << (24 - 8 * i)
    return ipaddress.IPv4Address(number)


def _parse_ipv6(text: str) -> ipaddress.IPv6Address | None:
    # Zone ids ("%eth0", or "%25eth0" as written in a URL) name an interface, not an address.
    address = text.split("%", 1)[0]
    try:
        return ipaddress.IPv6Address(address)
    except ValueError:
        return None


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address `host` denotes when it is an IP literal in any notation, else None.

    Accepts everything inet_aton accepts (1 to 4 parts, each decimal, 0-octal or 0x-hex,
    trailing whitespace and junk after it), plus WHATWG's single trailing dot, bracketed
    or bare IPv6 and IPv6 zone ids. A name that is not a literal gives None.
    """
    text = host.strip()
    if text.startswith("["):
        return _parse_ipv6(text[1:-1]) if text.endswith("]") else None
    if ":" in text:
        return _parse_ipv6(text)
    if not text:
        return None
    # inet_aton stops at the first whitespace and ignores whatever follows.
    text = text.split(maxsplit=1)[0]
    if text.endswith(".") and text != ".":
        text = text[:-1]
    return _parse_ipv4(text)


# ----------------------------------------------------------------------- allow-list

_NAME: Final = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*", re.ASCII)
_LOOPBACKS: Final = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))


def _normalise_name(raw_host: str) -> str | None:
    host = raw_host.lower()
    if host.endswith("."):
        host = host[:-1]
    return host if len(host) <= 253 and _NAME.fullmatch(host) else None


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Outbound targets that may be reached although private (OUTBOUND_ALLOWLIST).

    An entry without a port allows every port. A name entry matches that name (not
    other names resolving to the same place); an address entry matches the address
    however it is spelled and whichever name resolved to it.
    """

    names: frozenset[tuple[str, int | None]] = frozenset()
    addresses: frozenset[tuple[IPAddress, int | None]] = frozenset()

    @classmethod
    def parse(cls, spec: str | Iterable[str] | None) -> Allowlist:
        """Parse "host,host:port,[v6]:port"; raises ValueError naming a bad entry."""
        if spec is None:
            return cls()
        entries = spec.split(",") if isinstance(spec, str) else list(spec)
        names: set[tuple[str, int | None]] = set()
        addresses: set[tuple[IPAddress, int | None]] = set()
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            host, port = _split_host_port(entry)
            address = parse_ip_literal(host)
            if address is not None:
                addresses.add((address, port))
                continue
            try:
                raw = httpx.URL(f"http://{host}/").raw_host.decode("ascii")
            except (httpx.InvalidURL, UnicodeError) as exc:
                raise ValueError(f"invalid OUTBOUND_ALLOWLIST entry: {entry!r}") from exc
            name = _normalise_name(raw)
            if name is None:
                raise ValueError(f"invalid OUTBOUND_ALLOWLIST entry: {entry!r}")
            names.add((name, port))
        return cls(frozenset(names), frozenset(addresses))

    def allows(self, host: str | IPAddress, port: int) -> bool:
        """Whether `host` (a name, a literal in any notation, or an address) at `port` is listed."""
        if isinstance(host, str):
            literal = parse_ip_literal(host)
            if literal is None:
                name = _normalise_name(host) or host.lower()
                return (name, port) in self.names or (name, None) in self.names
            host = literal
        if isinstance(host, ipaddress.IPv6Address):
            host = ipaddress.IPv6Address(int(host))
        return (host, port) in self.addresses or (host, None) in self.addresses

    def __bool__(self) -> bool:
        return bool(self.names or self.addresses)


def _split_host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        close = entry.find("]")
        if close < 0:
            raise ValueError(f"invalid OUTBOUND_ALLOWLIST entry: {entry!r}")
        host, rest = entry[: close + 1], entry[close + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"invalid OUTBOUND_ALLOWLIST entry: {entry!r}")
        return host, _parse_port(rest[1:], entry)
    if entry.count(":") > 1:  # a bare IPv6 address
        return entry, None
    host, sep, port = entry.partition(":")
    return host, (_parse_port(port, entry) if sep else None)


def _parse_port(text: str, entry: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"invalid port in OUTBOUND_ALLOWLIST entry: {entry!r}")
    return int(text)


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

    @property
    def host_header(self) -> str:
        return self.url.netloc.decode("ascii")

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


def _getaddrinfo_sync(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
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


def resolve_checked_sync(
    host: str, port: int, allowlist: Allowlist | None = None, allow_private: bool = False
) -> list[IPAddress]:
    """`resolve_checked` for synchronous code (blocks in getaddrinfo)."""
    literal = parse_ip_literal(host)
    found = [literal] if literal is not None else _getaddrinfo_sync(host, port)
    return _vet_addresses(host, port, found, allowlist or Allowlist(), allow_private)


# ------------------------------------------------------------------------- response


@dataclass(frozen=True, slots=True)
class SafeResponse:
    """A complete response. `redirects` lists the URLs that answered with a redirect."""

    status_code: int
    headers: httpx.Headers
    final_url: str
    body: bytes
    redirects: list[str] = field(default_factory=list)

    @property
    def encoding(self) -> str:
        message = email.message.Message()
        message["content-type"] = self.headers.get("content-type", "")
        charset = message.get_content_charset()
        if charset:
            try:
                return codecs.lookup(charset).name
            except LookupError:
                pass
        return "utf-8"

    @property
    def text(self) -> str:
        return self.body.decode(self.encoding, errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.body)


# ----------------------------------------------------------- the shared sans-IO core
#
# `_exchange` holds every policy decision: checks, which addresses to try, redirects,
# method and header rewriting. It yields `_Resolve` (answer: list of addresses from
# getaddrinfo) and `_Send` (answer: `_Received`, or None when the connection could not
# be made) and returns the SafeResponse. The async and sync clients only do the I/O.


@dataclass(frozen=True, slots=True)
class _Resolve:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class _Send:
    method: str
    url: httpx.URL  # host is the checked address
    headers: list[tuple[str, str]]
    content: bytes | None
    extensions: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Received:
    status_code: int
    headers: httpx.Headers
    body: bytes


_Step: TypeAlias = _Resolve | _Send
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
# Headers we always set ourselves; a caller's value would defeat pinning or framing.
_OWN_HEADERS: Final = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_BODY_HEADERS: Final = frozenset({"content-type", "content-encoding", "content-language"})
_CREDENTIAL_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie"})


def _is_redirect(status_code: int, headers: httpx.Headers) -> bool:
    return status_code in _REDIRECTS and "location" in headers


def _has_no_body(step: _Send, response: httpx.Response) -> bool:
    # A redirect's body is never used; a HEAD answer may declare a length it does not send.
    return step.method == "HEAD" or _is_redirect(response.status_code, response.headers)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _prepare_body(
    headers: Mapping[str, str] | None, content: bytes | str | None, json: Any
) -> tuple[list[tuple[str, str]], bytes | None]:
    own = [(k, v) for k, v in (headers or {}).items() if k.lower() not in _OWN_HEADERS]
    if json is not None:
        if content is not None:
            raise ValueError("pass content or json, not both")
        content = jsonlib.dumps(json, separators=(",", ":"), ensure_ascii=False)
        if not any(k.lower() == "content-type" for k, _ in own):
            own.append(("Content-Type", "application/json"))
    body = content.encode("utf-8") if isinstance(content, str) else content
    return own, body


def _exchange(
    method: str,
    url: str | httpx.URL,
    headers: list[tuple[str, str]],
    content: bytes | None,
    *,
    max_redirects: int,
    allowlist: Allowlist,
    allow_private: bool,
    origin_headers: list[tuple[str, str]] | None = None,
) -> Generator[_Step, object, SafeResponse]:
    checked = check_url(url, allowlist, allow_private=allow_private)
    method = method.upper()
    redirects: list[str] = []
    # A caller's own headers (a user's cookie, say) go to the first URL's origin only: once a
    # redirect leaves it they are dropped for good, even if a later hop comes back.
    first_origin = _origin(checked.url)
    origin_only = list(origin_headers or [])
    while True:
        if checked.ip is not None:
            addresses: list[IPAddress] = [checked.ip]  # judged by check_url
        else:
            answer = yield _Resolve(checked.host, checked.port)
            assert isinstance(answer, list)
            addresses = _vet_addresses(checked.host, checked.port, answer, allowlist, allow_private)

        send_headers = [*headers, *origin_only, ("Host", checked.host_header)]
        extensions: dict[str, Any] = {}
        if checked.scheme == "https":
            if checked.ip is None:
                extensions["sni_hostname"] = checked.host
            # httpcore pools connections by (scheme, address, port) and ignores SNI, so a
            # kept-alive TLS connection verified for one name could carry another name's
            # request. Never keep TLS connections.
            send_headers.append(("Connection", "close"))

        received: _Received | None = None
        for address in addresses:
            reply = yield _Send(
                method=method,
                url=checked.url.copy_with(host=str(address)),
                headers=send_headers,
                content=content,
                extensions=extensions,
            )
            if reply is not None:
                assert isinstance(reply, _Received)
                received = reply
                break
        if received is None:
            raise OutboundUnreachable(f"could not connect to {checked.host}")

        if not _is_redirect(received.status_code, received.headers):
            return SafeResponse(
                status_code=received.status_code,
                headers=received.headers,
                final_url=str(checked.url),
                body=received.body,
                redirects=redirects,
            )
        if len(redirects) >= max_redirects:
            raise OutboundRefused("too many redirects")
        try:
            target = checked.url.join(received.headers["location"])
        except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
            raise OutboundRefused("redirect to an invalid URL") from exc
        try:
            following = check_url(target, allowlist, allow_private=allow_private)
        except OutboundRefused as exc:
            raise OutboundRefused(f"redirect refused: {exc.reason}") from exc
        redirects.append(str(checked.url))

        # Fetch standard: 303 turns everything but HEAD into GET, 301/302 turn POST into
        # GET; 307/308 repeat the method and body.
        status = received.status_code
        if (status == 303 and method not in ("GET", "HEAD")) or (status in (301, 302) and method == "POST"):
            method, content = "GET", None
            headers = [(k, v) for k, v in headers if k.lower() not in _BODY_HEADERS]
        if _origin(following.url) != _origin(checked.url):
            headers = [(k, v) for k, v in headers if k.lower() not in _CREDENTIAL_HEADERS]
        if _origin(following.url) != first_origin:
            origin_only = []
        checked = following


def _advance(gen: Generator[_Step, object, SafeResponse], reply: object) -> _Step | SafeResponse:
    try:
        return gen.send(reply)
    except StopIteration as stop:
        result: SafeResponse = stop.value
        return result


class _BodyBuffer:
    def __init__(self, max_bytes: int, headers: httpx.Headers) -> None:
        self._max = max_bytes
        declared = headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
            raise BodyTooLarge(f"the response body is larger than {max_bytes} bytes")
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._max:
            raise BodyTooLarge(f"the response body is larger than {self._max} bytes")
        self._parts.append(chunk)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


def _map_httpx_error(exc: httpx.HTTPError) -> OutboundError:
    if isinstance(exc, httpx.TimeoutException):
        return OutboundTimeout("the remote server did not answer in time")
    if isinstance(exc, httpx.DecodingError):
        return OutboundUnreachable("the response body could not be decoded")
    return OutboundUnreachable("the connection to the remote server failed")


_NO_COOKIES: Final = DefaultCookiePolicy(allowed_domains=[])


def _client_options(
    *, connect_timeout: float, timeout: float, user_agent: str, max_connections: int
) -> dict[str, Any]:
    return {
        "follow_redirects": False,
        # No proxies or .netrc from the environment: both would bypass or leak.
        "trust_env": False,
        # One client serves many users: never carry one user's cookies to another's request.
        "cookies": CookieJar(policy=_NO_COOKIES),
        "timeout": httpx.Timeout(timeout, connect=connect_timeout),
        "limits": httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections // 5
        ),
        "headers": {"User-Agent": user_agent},
    }


class _SafeClientBase:
    def __init__(
        self,
        allowlist: Allowlist | None,
        allow_private: bool,
        connect_timeout: float,
        timeout: float,
    ) -> None:
        self.allowlist = allowlist or Allowlist()
        self.allow_private = allow_private
        self.connect_timeout = connect_timeout
        self.timeout = timeout

    def _start(
        self,
        method: str,
        url: str | httpx.URL,
        headers: Mapping[str, str] | None,
        content: bytes | str | None,
        json: Any,
        max_redirects: int,
        origin_headers: Mapping[str, str] | None = None,
    ) -> Generator[_Step, object, SafeResponse]:
        own_headers, body = _prepare_body(headers, content, json)
        origin_only = [(k, v) for k, v in (origin_headers or {}).items() if k.lower() not in _OWN_HEADERS]
        return _exchange(
            method,
            url,
            own_headers,
            body,
            max_redirects=max_redirects,
            allowlist=self.allowlist,
            allow_private=self.allow_private,
            origin_headers=origin_only,
        )

    def _timeouts(self, remaining: float) -> httpx.Timeout:
        return httpx.Timeout(remaining, connect=min(self.connect_timeout, remaining))


class SafeAsyncClient(_SafeClientBase):
    """SSRF-safe HTTP for async code; make one per process (lifespan) and share it.

    `timeout` is the default total deadline for one `request` call: resolution, every
    redirect hop and the whole body. `connect_timeout` bounds each TCP/TLS connect.
    """

    def __init__(
        self,
        allowlist: Allowlist | None = None,
        *,
        allow_private: bool = False,
        connect_timeout: float = 5.0,
        timeout: float = 30.0,
        user_agent: str = DEFAULT_USER_AGENT,
        max_connections: int = 100,
    ) -> None:
        super().__init__(allowlist, allow_private, connect_timeout, timeout)
        self._client = httpx.AsyncClient(
            **_client_options(
                connect_timeout=connect_timeout,
                timeout=timeout,
                user_agent=user_agent,
                max_connections=max_connections,
            )
        )

    async def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        json: Any = None,
        max_redirects: int = 5,
        max_bytes: int = 5_000_000,
        # The contract is a per-call total deadline; it is enforced inside with asyncio.timeout.
        timeout: float | None = None,  # noqa: ASYNC109
        origin_headers: Mapping[str, str] | None = None,
    ) -> SafeResponse:
        """Send a request, following up to `max_redirects` checked redirects.

        `origin_headers` are sent only while the request stays on the first URL's origin
        (scheme, host, port); a redirect elsewhere drops them for the rest of the chain.
        Raises OutboundRefused (BodyTooLarge past `max_bytes`), OutboundTimeout when
        `timeout` seconds (default: the client's) pass, OutboundUnreachable.
        """
        total = self.timeout if timeout is None else timeout
        gen = self._start(method, url, headers, content, json, max_redirects, origin_headers)
        try:
            async with asyncio.timeout(total):
                step = _advance(gen, None)
                while not isinstance(step, SafeResponse):
                    if isinstance(step, _Resolve):
                        reply: object = await _getaddrinfo(step.host, step.port)
                    else:
                        reply = await self._send(step, max_bytes, total)
                    step = _advance(gen, reply)
                return step
        except TimeoutError as exc:
            raise OutboundTimeout(f"no complete response within {total:g} seconds") from exc
        finally:
            gen.close()

    async def get(self, url: str | httpx.URL, **kwargs: Any) -> SafeResponse:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str | httpx.URL, **kwargs: Any) -> SafeResponse:
        return await self.request("POST", url, **kwargs)

    async def _send(self, step: _Send, max_bytes: int, total: float) -> _Received | None:
        request = self._client.build_request(
            step.method,
            step.url,
            headers=step.headers,
            content=step.content,
            extensions=step.extensions,
            timeout=self._timeouts(total),
        )
        try:
            response = await self._client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            return None  # try the next checked address
        except httpx.HTTPError as exc:
            raise _map_httpx_error(exc) from exc
        try:
            if _has_no_body(step, response):
                return _Received(response.status_code, response.headers, b"")
            buffer = _BodyBuffer(max_bytes, response.headers)
            async for chunk in response.aiter_bytes():
                buffer.feed(chunk)
            return _Received(response.status_code, response.headers, buffer.getvalue())
        except httpx.HTTPError as exc:
            raise _map_httpx_error(exc) from exc
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class SafeClient(_SafeClientBase):
    """The synchronous twin of SafeAsyncClient, for Celery tasks.

    The total deadline is checked before every step and after every body chunk, and each
    socket operation is given at most the time left, so a request overruns `timeout` by
    at most one operation's wait. getaddrinfo itself cannot be interrupted.
    """

    def __init__(
        self,
        allowlist: Allowlist | None = None,
        *,
        allow_private: bool = False,
        connect_timeout: float = 5.0,
        timeout: float = 30.0,
        user_agent: str = DEFAULT_USER_AGENT,
        max_connections: int = 20,
    ) -> None:
        super().__init__(allowlist, allow_private, connect_timeout, timeout)
        self._client = httpx.Client(
            **_client_options(
                connect_timeout=connect_timeout,
                timeout=timeout,
                user_agent=user_agent,
                max_connections=max_connections,
            )
        )

    def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        json: Any = None,
        max_redirects: int = 5,
        max_bytes: int = 5_000_000,
        timeout: float | None = None,
    ) -> SafeResponse:
        """Same contract as `SafeAsyncClient.request`."""
        total = self.timeout if timeout is None else timeout
        deadline = _Deadline(total)
        gen = self._start(method, url, headers, content, json, max_redirects)
        try:
            step = _advance(gen, None)
            while not isinstance(step, SafeResponse):
                remaining = deadline.remaining()
                if isinstance(step, _Resolve):
                    reply: object = _getaddrinfo_sync(step.host, step.port)
                else:
                    reply = self._send(step, max_bytes, remaining, deadline)
                step = _advance(gen, reply)
            return step
        finally:
            gen.close()

    def get(self, url: str | httpx.URL, **kwargs: Any) -> SafeResponse:
        return self.request("GET", url, **kwargs)

    def post(self, url: str | httpx.URL, **kwargs: Any) -> SafeResponse:
        return self.request("POST", url, **kwargs)

    def _send(self, step: _Send, max_bytes: int, remaining: float, deadline: _Deadline) -> _Received | None:
        request = self._client.build_request(
            step.method,
            step.url,
            headers=step.headers,
            content=step.content,
            extensions=step.extensions,
            timeout=self._timeouts(remaining),
        )
        try:
            response = self._client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            return None
        except httpx.HTTPError as exc:
            raise _map_httpx_error(exc) from exc
        try:
            if _has_no_body(step, response):
                return _Received(response.status_code, response.headers, b"")
            buffer = _BodyBuffer(max_bytes, response.headers)
            for chunk in response.iter_bytes():
                buffer.feed(chunk)
                deadline.remaining()
            return _Received(response.status_code, response.headers, buffer.getvalue())
        except httpx.HTTPError as exc:
            raise _map_httpx_error(exc) from exc
        finally:
            response.close()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise OutboundTimeout(f"no complete response within {self._seconds:g} seconds")
        return left
