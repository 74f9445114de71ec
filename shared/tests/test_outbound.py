"""SSRF-safe outbound HTTP: classification tables, URL checks, and end-to-end runs
against real HTTP servers on 127.0.0.1 only (no other address is ever connected to)."""

from __future__ import annotations

import ipaddress
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from aiohttp import web

import shared._url_policy
from shared import (
    Allowlist,
    BodyTooLarge,
    OutboundClient,
    OutboundRefused,
    OutboundTimeout,
    OutboundUnreachable,
    check_url,
    resolve_checked,
)
from shared._ip_policy import IPAddress, forbidden_reason, parse_ip_literal

ip = ipaddress.ip_address

# --------------------------------------------------------------- forbidden_reason

FORBIDDEN_CASES: list[tuple[str, str | None]] = [
    # RFC 1918, all of 172.16/12
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.20.10.5", "private"),
    ("172.31.255.255", "private"),
    ("192.168.0.1", "private"),
    ("192.168.255.255", "private"),
    # just outside 172.16/12: public (classification only, never connected to)
    ("172.15.255.255", None),
    ("172.32.0.1", None),
    # loopback, unspecified, broadcast
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("255.255.255.255", "broadcast"),
    # link-local and cloud metadata
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("100.100.100.200", "metadata"),
    ("192.0.0.192", "metadata"),
    ("169.254.0.1", "link-local"),
    ("169.254.255.255", "link-local"),
    # CGNAT
    ("100.64.0.1", "cgnat"),
    ("100.127.255.255", "cgnat"),
    ("100.63.255.255", None),
    ("100.128.0.1", None),
    # multicast, reserved, documentation, benchmarking, protocol assignments
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("254.1.2.3", "reserved"),
    ("192.0.2.10", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("198.20.0.1", None),
    ("192.0.0.8", "reserved"),
    ("192.88.99.1", "reserved"),
    # public IPv4
    ("8.8.8.8", None),
    ("1.1.1.1", None),
    ("93.184.216.34", None),
    # IPv6 basics
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("febf:ffff::1", "link-local"),
    ("fec0::1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456:789a::1", "private"),
    ("fd00:ec2::254", "metadata"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001:2::1", "benchmarking"),
    ("100::1", "reserved"),
    ("2001:10::1", "reserved"),
    ("4000::1", "reserved"),
    ("2606:4700:4700::1111", None),
    ("2001:4860:4860::8888", None),
    # IPv4-mapped: judged by the embedded address
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:7f00:1", "loopback"),
    ("::ffff:169.254.169.254", "metadata"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:172.31.0.1", "private"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("::ffff:8.8.8.8", None),
    # IPv4-compatible (deprecated) and IPv4-translated
    ("::127.0.0.1", "loopback"),
    ("::169.254.169.254", "metadata"),
    ("::8.8.8.8", "reserved"),
    ("::ffff:0:127.0.0.1", "loopback"),
    ("::ffff:0:8.8.8.8", "reserved"),
    # NAT64
    ("64:ff9b::127.0.0.1", "loopback"),
    ("64:ff9b::a9fe:a9fe", "metadata"),
    ("64:ff9b::10.1.1.1", "private"),
    ("64:ff9b::8.8.8.8", None),
    ("64:ff9b:1::1", "reserved"),
    # 6to4
    ("2002:7f00:1::1", "loopback"),
    ("2002:a9fe:a9fe::1", "metadata"),
    ("2002:c0a8:101::1", "private"),
    ("2002:808:808::1", None),
    # Teredo: client address is stored inverted
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "documentation"),  # client 192.0.2.45
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # client 127.0.0.1
    ("2001:0:808:808:0:0:f7f7:f7f7", "reserved"),  # client 8.8.8.8: Teredo is never global
]


@pytest.mark.parametrize(("address", "expected"), FORBIDDEN_CASES)
def test_forbidden_reason(address: str, expected: str | None) -> None:
    assert forbidden_reason(ip(address)) == expected


def test_every_non_global_v4_block_is_forbidden() -> None:
    # Sample every /16 of the IPv4 space: anything Python calls non-global is refused.
    for high in range(0, 1 << 16):
        address = ipaddress.IPv4Address((high << 16) | 0x0101)
        if not address.is_global:
            assert forbidden_reason(address) is not None, address


# --------------------------------------------------------------- parse_ip_literal

LITERAL_CASES: list[tuple[str, str | None]] = [
    ("127.0.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0X7F000001", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("0177.0000.0000.0001", "127.0.0.1"),
    ("0x7f.0.0.1", "127.0.0.1"),
    ("0x7f.0x0.0x0.0x1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("0177.1", "127.0.0.1"),
    ("0x7f.0.1", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),
    ("0x00000000007f.1", "127.0.0.1"),
    ("00000000000000000177.1", "127.0.0.1"),
    ("127.0.0.1 trailing junk", "127.0.0.1"),
    (" 127.0.0.1", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("00", "0.0.0.0"),
    ("0x0", "0.0.0.0"),
    ("0x", "0.0.0.0"),
    ("169.254.43518", "169.254.169.254"),
    ("0xa9fea9fe", "169.254.169.254"),
    ("2852039166", "169.254.169.254"),
    ("0251.0376.0251.0376", "169.254.169.254"),
    ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
    ("10.1", "10.0.0.1"),
    ("172.1048577", "172.16.0.1"),
    ("4294967295", "255.255.255.255"),
    ("1.2.65535", "1.2.255.255"),
    ("1.16777215", "1.255.255.255"),
    # not literals
    ("4294967296", None),
    ("256.0.0.1", None),
    ("1.256.0.1", None),
    ("1.2.65536", None),
    ("1.16777216", None),
    ("08.0.0.1", None),
    ("0x7g.1", None),
    ("1.2.3.4.5", None),
    ("1..2", None),
    ("127.0.0.1..", None),
    ("", None),
    (".", None),
    ("example.com", None),
    ("1.2.3.example", None),
    ("\u0661\u0662\u0667.0.0.1", None),  # Arabic-Indic digits
    ("-1", None),
    ("+1", None),
    # IPv6
    ("[::1]", "::1"),
    ("::1", "::1"),
    ("[0:0:0:0:0:0:0:1]", "::1"),
    ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
    ("[fe80::1%25eth0]", "fe80::1"),
    ("fe80::1%eth0", "fe80::1"),
    ("[fd00:ec2::254]", "fd00:ec2::254"),
    ("[::1", None),
    ("[example.com]", None),
    ("::g", None),
]


@pytest.mark.parametrize(("host", "expected"), LITERAL_CASES)
def test_parse_ip_literal(host: str, expected: str | None) -> None:
    parsed = parse_ip_literal(host)
    assert (None if parsed is None else str(parsed)) == expected


_PART_SPELLINGS = ["0", "00", "0x", "0x0", "1", "7", "08", "010", "0x7f", "0X7F", "127", "255"]
_PART_SPELLINGS += ["0377", "0xff", "256", "0400", "0x100", "65535", "16777215", "4294967295"]
_PART_SPELLINGS += ["4294967296", "0x100000000", "037777777777", "2130706433", "a", ""]


def _inet_aton_corpus() -> Iterator[str]:
    for count in range(1, 6):
        for parts in itertools.product(_PART_SPELLINGS, repeat=min(count, 2)):
            padded = list(parts) + ["1"] * (count - len(parts))
            text = ".".join(padded)
            yield text
            yield text + "."
            yield text + " x"


def test_everything_inet_aton_accepts_is_recognised() -> None:
    """The C library's own parser is the oracle: whatever it turns into an address,
    parse_ip_literal turns into the same address."""
    accepted = 0
    for text in _inet_aton_corpus():
        try:
            packed = socket.inet_aton(text)
        except OSError:
            continue
        accepted += 1
        assert parse_ip_literal(text) == ipaddress.IPv4Address(packed), text
    assert accepted > 500


def test_everything_numeric_getaddrinfo_accepts_is_recognised() -> None:
    # AI_NUMERICHOST: the C library parses, no resolver is ever asked.
    corpus = [*_inet_aton_corpus(), "::1", "::ffff:127.0.0.1", "fe80::1%1", "::"]
    for text in corpus:
        try:
            infos = socket.getaddrinfo(text, 80, flags=socket.AI_NUMERICHOST)
        except (OSError, UnicodeError):
            continue
        expected = {ip(str(info[4][0]).split("%")[0]) for info in infos}
        parsed = parse_ip_literal(text)
        assert parsed is not None, text
        assert {parsed} == expected, text


# --------------------------------------------------------------------- check_url

REFUSED_URLS: list[tuple[str, str]] = [
    ("ftp://example.com/", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
    ("gopher://example.com/", "only http and https"),
    ("javascript:alert(1)", "only http and https"),
    ("http://user:pass@example.com/", "credentials"),
    ("http://user@example.com/", "credentials"),
    ("http://example.com\\@127.0.0.1/", "credentials"),
    ("http:///path", "no host"),
    ("http://", "no host"),
    ("http://example.com:0/", "invalid port"),
    ("http://example.com:65536/", "invalid port"),
    ("http://example.com:99999/", "invalid port"),
    ("http://example.com/" + "a" * 2048, "longer than 2048"),
    ("http://exa mple.com/", "whitespace"),
    ("http://example.com/\n", "whitespace"),
    ("http://example.com/\x00", "whitespace"),
    ("http://a%2eb/", "invalid host"),
    ("http://[fe80::1%25eth0]/", "zone"),
    ("http://[v1.x]/", "not a valid URL"),
    # loopback in every spelling
    ("http://127.0.0.1/", "loopback"),
    ("http://127.0.0.1:8080/", "loopback"),
    ("http://127.255.0.1/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://017700000001/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://0x7f.1/", "loopback"),
    # four dotted parts with a leading zero: httpx itself rejects the URL
    ("http://0177.0.0.1/", "not a valid URL"),
    ("http://0251.0376.0251.0376/", "not a valid URL"),
    ("http://0x7f.0.0.1/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://127.0.1/", "loopback"),
    ("http://127.0.0.1./", "loopback"),
    ("http://127\u30020\u30020\u30021/", "loopback"),  # ideographic full stops
    ("http://[::1]/", "loopback"),
    ("http://[0:0:0:0:0:0:0:1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:7f00:1]/", "loopback"),
    ("http://[0:0:0:0:0:ffff:7f00:1]/", "loopback"),
    ("http://[64:ff9b::7f00:1]/", "loopback"),
    ("http://[2002:7f00:1::1]/", "loopback"),
    ("http://localhost/", "loopback"),
    ("http://LOCALHOST./", "loopback"),
    ("http://api.localhost:8000/", "loopback"),
    # metadata
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://0xa9fea9fe/", "metadata"),
    ("http://2852039166/", "metadata"),
    ("http://169.254.43518/", "metadata"),
    ("http://0251.0376.0251.0376./", "metadata"),  # the trailing dot gets it past httpx
    ("http://0251.254.43518/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://[::ffff:a9fe:a9fe]/", "metadata"),
    # private, link-local, CGNAT and the rest
    ("http://10.0.0.1/", "private"),
    ("http://10.1/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.255/", "private"),
    ("http://192.168.1.1/", "private"),
    ("https://[fd00::1]/", "private"),
    ("http://[::ffff:192.168.1.1]/", "private"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://100.64.0.1/", "cgnat"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://255.255.255.255/", "broadcast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://198.18.0.1/", "benchmarking"),
    ("http://192.0.2.1/", "documentation"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED_URLS)
def test_check_url_refuses(url: str, reason: str) -> None:
    with pytest.raises(OutboundRefused) as caught:
        check_url(url, Allowlist())
    assert reason in caught.value.reason
    assert str(caught.value) == caught.value.reason


ACCEPTED_URLS: list[tuple[str, str, str, int]] = [
    # (url, canonical url, host, port) - checked only, never fetched
    ("http://example.com/", "http://example.com/", "example.com", 80),
    ("https://Example.COM.:8443/a?b=1#frag", "https://example.com:8443/a?b=1", "example.com", 8443),
    ("http://172.32.0.1/", "http://172.32.0.1/", "172.32.0.1", 80),
    ("http://172.15.255.255/", "http://172.15.255.255/", "172.15.255.255", 80),
    ("https://8.8.8.8/", "https://8.8.8.8/", "8.8.8.8", 443),
    ("http://134744072/", "http://8.8.8.8/", "8.8.8.8", 80),
    ("http://0x8.0x8.0x8.0x8/", "http://8.8.8.8/", "8.8.8.8", 80),
    ("http://[2606:4700:4700::1111]/", "http://[2606:4700:4700::1111]/", "2606:4700:4700::1111", 80),
    ("http://[::ffff:8.8.8.8]/", "http://[::ffff:808:808]/", "::ffff:808:808", 80),
    ("http://bücher.de/", "http://xn--bcher-kva.de/", "xn--bcher-kva.de", 80),
    ("http://evil.example#@127.0.0.1/", "http://evil.example", "evil.example", 80),
    ("http://under_score.example/", "http://under_score.example/", "under_score.example", 80),
]


@pytest.mark.parametrize(("url", "canonical", "host", "port"), ACCEPTED_URLS)
def test_check_url_accepts(url: str, canonical: str, host: str, port: int) -> None:
    checked = check_url(url, Allowlist())
    assert str(checked) == canonical
    assert (checked.host, checked.port) == (host, port)
    assert not checked.allowlisted


ALLOWLISTED: list[tuple[str, str, bool]] = [
    ("http://127.0.0.1:8080/", "127.0.0.1:8080", True),
    ("http://127.0.0.1:8081/", "127.0.0.1:8080", False),
    ("http://127.0.0.1:8081/", "127.0.0.1", True),
    ("http://2130706433:8080/", "127.0.0.1:8080", True),
    ("http://0x7f.1:8080/", "127.0.0.1:8080", True),
    ("http://127.0.0.2:8080/", "127.0.0.1:8080", False),
    ("http://localhost:8080/", "localhost:8080", True),
    ("http://LocalHost.:8080/", "localhost:8080", True),
    ("http://localhost:8080/", "127.0.0.1:8080", True),
    ("http://localhost:8081/", "localhost:8080", False),
    ("http://[::1]:8080/", "[::1]:8080", True),
    ("http://[::1]:9/", "[::1]", True),
    ("http://[::1]:9/", "::1", True),
    ("http://[::ffff:127.0.0.1]:8080/", "127.0.0.1:8080", False),
    ("http://10.1.2.3/", "10.1.2.3", True),
    ("https://10.1.2.3/", "10.1.2.3:80", False),
    ("http://169.254.169.254/", "10.1.2.3, localhost", False),
]


@pytest.mark.parametrize(("url", "spec", "allowed"), ALLOWLISTED)
def test_check_url_allowlist(url: str, spec: str, allowed: bool) -> None:
    allowlist = Allowlist.parse(spec)
    if allowed:
        check_url(url, allowlist)
    else:
        with pytest.raises(OutboundRefused):
            check_url(url, allowlist)


def test_allow_private_allows_private_addresses_but_not_metadata_or_bad_urls() -> None:
    for url in ("http://10.1.2.3/", "http://[::1]/", "http://0x7f.1/", "http://localhost/"):
        assert not check_url(url, Allowlist(), allow_private=True).allowlisted
    for url in ("http://169.254.169.254/", "http://[fd00:ec2::254]/"):
        with pytest.raises(OutboundRefused, match="metadata"):
            check_url(url, Allowlist(), allow_private=True)
    assert check_url("http://169.254.169.254/", Allowlist.parse("169.254.169.254")).allowlisted
    for url in ("ftp://10.0.0.1/", "http://u@10.0.0.1/", "http://10.0.0.1:0/"):
        with pytest.raises(OutboundRefused):
            check_url(url, Allowlist(), allow_private=True)


def test_allowlist_parse() -> None:
    allowlist = Allowlist.parse(" hooks.internal , api:8443,, [::1]:2, fd00::1, 10.0.0.1:5, 0x7f.1:9 ")
    assert allowlist.allows("hooks.internal", 1)
    assert allowlist.allows("HOOKS.internal.", 443)
    assert allowlist.allows("api", 8443)
    assert not allowlist.allows("api", 443)
    assert allowlist.allows("::1", 2)
    assert allowlist.allows(ip("::1"), 2)
    assert not allowlist.allows("::1", 3)
    assert allowlist.allows(ip("fd00::1"), 7)
    assert allowlist.allows("10.0.0.1", 5)
    assert allowlist.allows("012.0.0.1", 5)
    assert allowlist.allows("127.0.0.1", 9)
    assert not allowlist.allows("10.0.0.2", 5)
    assert not Allowlist.parse("")
    assert not Allowlist.parse(None)


@pytest.mark.parametrize(
    "entry", ["host:notaport", "host:0", "host:70000", "[::1", "[::1]x", "bad host!", "a:b:"]
)
def test_allowlist_rejects_bad_entries(entry: str) -> None:
    with pytest.raises(ValueError, match="OUTBOUND_ALLOWLIST"):
        Allowlist.parse(entry)


# ------------------------------------------------------------- resolution (loopback only)


async def test_resolve_checked_refuses_a_name_resolving_to_loopback() -> None:
    # "localhost" comes from /etc/hosts: no resolver traffic leaves the machine.
    with pytest.raises(OutboundRefused, match=r"localhost resolves to a forbidden address"):
        await resolve_checked("localhost", 80, Allowlist())
    with pytest.raises(OutboundRefused, match="metadata"):
        await resolve_checked("0xa9fea9fe", 80, Allowlist())


async def test_resolve_checked_allowlisted() -> None:
    by_name = await resolve_checked("localhost", 80, Allowlist.parse("localhost:80"))
    assert ip("127.0.0.1") in by_name
    assert by_name == await resolve_checked("localhost", 80, Allowlist.parse("localhost"))
    # an address entry allows any name that resolves only to allowed addresses
    by_address = await resolve_checked("localhost", 80, Allowlist.parse("127.0.0.1,::1"))
    assert ip("127.0.0.1") in by_address
    assert await resolve_checked("localhost", 80, None, allow_private=True) == by_name


# ------------------------------------------------------------------ loopback servers


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route()

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> None:
        self.server.hits += 1
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        stop = self.server.stop
        if parts.path == "/echo":
            echo = {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode(),
            }
            self._reply(200, json.dumps(echo).encode(), {"Content-Type": "application/json"})
        elif parts.path == "/redirect":
            self._reply(int(query.get("code", "302")), headers={"Location": query["to"]})
        elif parts.path.startswith("/chain/"):
            left = int(parts.path.rsplit("/", 1)[1])
            if left:
                self._reply(302, headers={"Location": f"/chain/{left - 1}"})
            else:
                self._reply(200, b"end of chain")
        elif parts.path == "/set-cookie":
            self._reply(200, b"ok", {"Set-Cookie": "session=secret; Path=/"})
        elif parts.path == "/big":  # no Content-Length: delimited by close
            self.send_response(200)
            self.end_headers()
            chunk = b"x" * 65536
            for _ in range(400):  # 26 MB if nobody stops reading
                if stop.is_set():
                    return
                self.wfile.write(chunk)
        elif parts.path == "/big-declared":
            self.send_response(200)
            self.send_header("Content-Length", str(10**10))
            self.end_headers()
            self.wfile.write(b"x" * 10)
        elif parts.path == "/slow":
            stop.wait(10)
            self._reply(200, b"late")
        elif parts.path == "/drip":  # a byte every 50 ms: no single read ever times out
            self.send_response(200)
            self.end_headers()
            for _ in range(200):
                if stop.wait(0.05):
                    return
                self.wfile.write(b".")
                self.wfile.flush()
        else:
            self._reply(404, b"no such path")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits = 0
        self.stop = threading.Event()
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up on /big and /drip is the point of those routes

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.stop.set()
        self.shutdown()
        self.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def other_server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


def _allow(srv: _Server) -> Allowlist:
    return Allowlist.parse(f"127.0.0.1:{srv.port},localhost:{srv.port}")


def _redirect(srv: _Server, to: str, code: int = 302, host: str = "127.0.0.1") -> str:
    return srv.url(f"/redirect?code={code}&to={quote(to, safe='')}", host)


# (a) refused before any connection is made

LOOPBACK_SPELLINGS = [
    "http://127.0.0.1:{port}/echo",
    "http://localhost:{port}/echo",
    "http://2130706433:{port}/echo",
    "http://0x7f.1:{port}/echo",
    "http://0177.0.0.1:{port}/echo",
    "http://127.1:{port}/echo",
    "http://[::1]:{port}/echo",
    "http://[::ffff:127.0.0.1]:{port}/echo",
]


@pytest.mark.parametrize("template", LOOPBACK_SPELLINGS)
async def test_loopback_refused_without_allowlist(server: _Server, template: str) -> None:
    before = server.hits
    async with OutboundClient() as client:
        with pytest.raises(OutboundRefused, match=r"loopback|not a valid URL"):
            await client.get(template.format(port=server.port))
    assert server.hits == before


# (b) allowed by the allow-list


async def test_allowlisted_address_succeeds(server: _Server) -> None:
    async with OutboundClient(Allowlist.parse(f"127.0.0.1:{server.port}")) as client:
        response = await client.post(server.url("/echo"), json={"a": 1}, headers={"X-Test": "1"})
        # the same address in another spelling is the same target
        assert (await client.get(f"http://2130706433:{server.port}/echo")).status_code == 200
    assert response.status_code == 200
    echo = response.json()
    assert echo["method"] == "POST"
    assert json.loads(echo["body"]) == {"a": 1}
    assert echo["headers"]["content-type"] == "application/json"
    assert echo["headers"]["x-test"] == "1"
    assert echo["headers"]["host"] == f"127.0.0.1:{server.port}"
    assert response.redirects == []


async def test_allowlisted_name_sends_its_host_header(server: _Server) -> None:
    async with OutboundClient(Allowlist.parse(f"localhost:{server.port}")) as client:
        response = await client.get(server.url("/echo", host="localhost"))
    assert response.json()["headers"]["host"] == f"localhost:{server.port}"
    assert response.final_url == server.url("/echo", host="localhost")


async def test_allow_private_reaches_loopback(server: _Server) -> None:
    async with OutboundClient(allow_private=True) as client:
        assert (await client.get(server.url("/echo"))).status_code == 200


async def test_cookies_are_never_kept(server: _Server) -> None:
    async with OutboundClient(_allow(server)) as client:
        first = await client.get(server.url("/set-cookie"))
        assert "set-cookie" in first.headers
        echo = (await client.get(server.url("/echo"))).json()
    assert "cookie" not in echo["headers"]


# (c) redirects: allowed hops work, a hop to a target not allowed is refused


async def test_redirect_chain_through_allowed_hops(server: _Server) -> None:
    async with OutboundClient(_allow(server)) as client:
        response = await client.get(server.url("/chain/3"))
        hopping = await client.get(
            _redirect(server, server.url("/chain/1", host="localhost")),
            headers={"Authorization": "Bearer secret"},
        )
        cross = await client.get(
            _redirect(server, server.url("/echo", host="localhost")),
            headers={"Authorization": "Bearer secret"},
        )
        same = await client.get(_redirect(server, "/echo"), headers={"Authorization": "Bearer secret"})
    assert response.status_code == 200
    assert response.body == b"end of chain"
    assert response.final_url == server.url("/chain/0")
    assert response.redirects == [server.url(f"/chain/{n}") for n in (3, 2, 1)]
    assert hopping.final_url == server.url("/chain/0", host="localhost")
    assert len(hopping.redirects) == 2
    assert "authorization" not in cross.json()["headers"]  # another origin
    assert same.json()["headers"]["authorization"] == "Bearer secret"


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{other}/echo",
        "http://localhost:{other}/echo",
        "http://127.0.0.2:{port}/echo",
        "http://[::1]:{port}/echo",
        "http://169.254.169.254/latest/meta-data/",
        "http://0xa9fea9fe/",
        "file:///etc/passwd",
        "http://user@127.0.0.1:{port}/echo",
    ],
)
async def test_redirect_to_a_target_not_allowed_is_refused(
    server: _Server, other_server: _Server, target: str
) -> None:
    location = target.format(port=server.port, other=other_server.port)
    before = other_server.hits
    async with OutboundClient(_allow(server)) as client:
        with pytest.raises(OutboundRefused, match="redirect refused"):
            await client.get(_redirect(server, location))
    assert other_server.hits == before


# (d) redirect budget


async def test_too_many_redirects(server: _Server) -> None:
    async with OutboundClient(_allow(server)) as client:
        assert (await client.get(server.url("/chain/5"))).status_code == 200
        with pytest.raises(OutboundRefused, match="too many redirects"):
            await client.get(server.url("/chain/6"))
        with pytest.raises(OutboundRefused, match="too many redirects"):
            await client.get(server.url("/chain/1"), max_redirects=0)


# (e) body size


async def test_huge_body_is_aborted(server: _Server) -> None:
    async with OutboundClient(_allow(server)) as client:
        started = time.monotonic()
        with pytest.raises(BodyTooLarge, match="larger than 1000000 bytes"):
            await client.get(server.url("/big"), max_bytes=1_000_000)
        with pytest.raises(BodyTooLarge):
            await client.get(server.url("/big-declared"))
        assert (await client.get(server.url("/echo"), max_bytes=10_000)).status_code == 200
    assert time.monotonic() - started < 5
    assert issubclass(BodyTooLarge, OutboundRefused)


# (f) total deadline


@pytest.mark.parametrize("path", ["/slow", "/drip"])
async def test_total_deadline(server: _Server, path: str) -> None:
    async with OutboundClient(_allow(server), timeout=0.5) as client:
        started = time.monotonic()
        with pytest.raises(OutboundTimeout):
            await client.get(server.url(path))
        assert time.monotonic() - started < 2
        # a per-call deadline overrides the client's
        started = time.monotonic()
        with pytest.raises(OutboundTimeout):
            await client.get(server.url(path), timeout=0.2)
        assert time.monotonic() - started < 1


# (g) method rewriting on redirects


@pytest.mark.parametrize(
    ("code", "method", "body"),
    [(301, "GET", ""), (302, "GET", ""), (303, "GET", ""), (307, "POST", "x=1"), (308, "POST", "x=1")],
)
async def test_redirect_method_rules(server: _Server, code: int, method: str, body: str) -> None:
    async with OutboundClient(_allow(server)) as client:
        response = await client.post(
            _redirect(server, "/echo", code=code),
            content=b"x=1",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    echo = response.json()
    assert (echo["method"], echo["body"]) == (method, body)
    assert ("content-type" in echo["headers"]) == (method == "POST")


async def test_unreachable_allowlisted_port(server: _Server) -> None:
    # a closed port on loopback: connection refused, reported as unreachable
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    async with OutboundClient(Allowlist.parse(f"127.0.0.1:{closed_port}")) as client:
        with pytest.raises(OutboundUnreachable):
            await client.get(f"http://127.0.0.1:{closed_port}/")


# (h) names: the connection goes to the checked answer, SNI/Host stay the name


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
    """Synthetic DNS answers for made-up names; every connection still goes to 127.0.0.1."""

    async def getaddrinfo(host: str, port: int) -> list[IPAddress]:
        if host not in answers:
            raise OutboundUnreachable(f"could not resolve {host}")
        return [ip(a) for a in answers[host]]

    monkeypatch.setattr(shared._url_policy, "_getaddrinfo", getaddrinfo)


async def test_a_name_is_connected_at_its_checked_address_with_its_host_header(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_dns(monkeypatch, {"site.example": ["127.0.0.1"]})
    async with OutboundClient(Allowlist.parse(f"127.0.0.1:{server.port}")) as client:
        response = await client.get(f"http://site.example:{server.port}/echo")
    assert response.json()["headers"]["host"] == f"site.example:{server.port}"
    assert response.final_url == f"http://site.example:{server.port}/echo"


@pytest.mark.parametrize(
    "answer",
    [["10.0.0.5"], ["93.184.216.34", "127.0.0.1"], ["::ffff:169.254.169.254"], ["2606:4700::1", "fe80::1"]],
)
async def test_a_name_with_any_forbidden_address_is_refused_before_connecting(
    server: _Server, monkeypatch: pytest.MonkeyPatch, answer: list[str]
) -> None:
    _fake_dns(monkeypatch, {"rebind.example": answer})
    before = server.hits
    async with OutboundClient() as client:
        with pytest.raises(OutboundRefused, match=r"rebind\.example resolves to a forbidden"):
            await client.get(f"http://rebind.example:{server.port}/echo")
    assert server.hits == before


async def test_every_redirect_hop_is_resolved_and_checked_again(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_dns(monkeypatch, {"internal.example": ["192.168.0.10"]})
    async with OutboundClient(_allow(server)) as client:
        with pytest.raises(OutboundRefused, match="private"):
            await client.get(_redirect(server, f"http://internal.example:{server.port}/echo"))


# (i) a receiver's answer: redirects not followed, a long body cut rather than refused


async def test_redirect_handed_back_and_long_body_truncated_when_asked(server: _Server) -> None:
    async with OutboundClient(_allow(server)) as client:
        redirect = await client.post(_redirect(server, "/echo"), content=b"x", follow_redirects=False)
        cut = await client.get(server.url("/big"), max_bytes=100_000, truncate=True)
        after = await client.get(server.url("/echo"))
    assert (redirect.status_code, redirect.headers["location"], redirect.redirects) == (302, "/echo", [])
    assert cut.status_code == 200 and cut.body == b"x" * 100_000
    assert after.status_code == 200


# (j) keep-alive: requests to one name share a pooled connection through the checked resolver


async def test_requests_to_one_name_reuse_one_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dns(monkeypatch, {"pool.example": ["127.0.0.1"]})
    peers: list[object] = []

    async def hello(request: web.Request) -> web.Response:
        peers.append(request.transport)
        return web.Response(text="hi")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with OutboundClient(Allowlist.parse(f"127.0.0.1:{port}")) as client:
            bodies = [(await client.get(f"http://pool.example:{port}/")).body for _ in range(5)]
    finally:
        await runner.cleanup()
    assert bodies == [b"hi"] * 5
    assert len(peers) == 5 and len({id(p) for p in peers}) == 1


# (k) a caller's origin headers: only while the chain stays on the first URL's origin


async def test_origin_headers_are_dropped_for_good_once_a_redirect_leaves_the_origin(
    server: _Server,
) -> None:
    mine = {"X-Token": "t1", "Cookie": "s=1"}
    async with OutboundClient(_allow(server)) as client:
        same = await client.get(_redirect(server, "/echo"), origin_headers=mine)
        away = await client.get(_redirect(server, server.url("/echo", host="localhost")), origin_headers=mine)
        back = await client.get(
            _redirect(server, server.url(f"/redirect?to={quote(server.url('/echo'), safe='')}", "localhost")),
            origin_headers=mine,
        )
    assert same.json()["headers"]["x-token"] == "t1" and same.json()["headers"]["cookie"] == "s=1"
    for response in (away, back):
        assert "x-token" not in response.json()["headers"] and "cookie" not in response.json()["headers"]
    assert back.final_url == server.url("/echo")
