"""Which addresses the platform may reach: classification, IP-literal parsing, the allow-list.

The SSRF policy's address half (the URL half is `_url_policy`). `forbidden_reason` judges an
address; `parse_ip_literal` recognises a host written as an IP address in any notation
getaddrinfo/inet_aton, curl or a browser would accept (decimal, octal, hex, short forms,
bracketed IPv6, IPv4 embedded in IPv6); `Allowlist` is OUTBOUND_ALLOWLIST. This code held
against about 75 tricky URL forms in review: change it only with a test for the new form.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TypeAlias

import httpx

__all__ = ["Allowlist", "IPAddress", "forbidden_reason", "parse_ip_literal"]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

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
    if ip.sixtofour is not None:
        # Judged by the IPv4 address alone: CPython before 3.11.4 counts all of 2002::/16 as
        # private, so `is_global` below would make the answer depend on the interpreter.
        return forbidden_reason(ip.sixtofour)
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
