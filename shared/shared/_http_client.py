"""The platform's one outbound HTTP client: aiohttp, connecting only to checked addresses.

Scraping, task callbacks and notification deliveries all send through `OutboundClient`.
How the SSRF policy (`_url_policy`, `_ip_policy`) is enforced:

- Every URL, the first and each redirect hop, passes `check_url`. An IP-literal host is
  judged there and never reaches a resolver.
- aiohttp asks `_CheckedResolver` for a name's addresses. It answers only when *every*
  address passed `resolve_checked`, so the socket goes to a checked address while the TLS
  SNI, the certificate check and the Host header use the name. A rebinding DNS answer is
  never consulted again (aiohttp keeps the checked answer for `ttl_dns_cache`).
- Keep-alive is safe with TLS: aiohttp keys its pool by (host name, port, TLS), so a
  connection verified for one name never carries another name's request.
- Redirects are followed by hand: at most `max_redirects`, each hop checked, methods
  rewritten as the Fetch standard says, credentials dropped across origins.
- Bodies are streamed up to `max_bytes` (decompressed bytes, so a gzip bomb stops too);
  one total deadline covers resolution, every hop and the body; each connect is bounded.

Why aiohttp and not httpx: pinning the address in httpx means rewriting the URL host,
and httpcore pools by address and ignores SNI, so TLS connections could never be kept
alive; its pool also served a few hundred requests a second at 64 in flight on this
hardware against several thousand for aiohttp, and a batch of 10,000 deliveries needs both.
"""

from __future__ import annotations

import asyncio
import codecs
import email.message
import functools
import json as jsonlib
import socket
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
import httpx
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from shared._ip_policy import Allowlist
from shared._url_policy import (
    BodyTooLarge,
    CheckedURL,
    OutboundError,
    OutboundRefused,
    OutboundTimeout,
    OutboundUnreachable,
    check_url,
    resolve_checked,
)

__all__ = ["DEFAULT_USER_AGENT", "OutboundClient", "OutboundResponse"]

DEFAULT_USER_AGENT: Final = "smart-application/0.1 (outbound)"

_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
# Headers we always set ourselves; a caller's value would defeat pinning or framing.
_OWN_HEADERS: Final = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_BODY_HEADERS: Final = frozenset({"content-type", "content-encoding", "content-language"})
_CREDENTIAL_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie"})
_CHUNK: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class OutboundResponse:
    """A complete response. `redirects` lists the URLs that answered with a redirect."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive
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


class _Refused(OSError):
    """Raised by the resolver so aiohttp hands it back inside ClientConnectorError."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _CheckedResolver(AbstractResolver):
    """Resolves through the shared rules: forbidden addresses never reach the connector."""

    def __init__(self, allowlist: Allowlist, allow_private: bool) -> None:
        self.allowlist = allowlist
        self.allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            addresses = await resolve_checked(host, port, self.allowlist, self.allow_private)
        except OutboundRefused as exc:
            raise _Refused(exc.reason) from None
        except OutboundUnreachable as exc:
            raise OSError(exc.reason) from None
        return [
            {
                "hostname": host,
                "host": str(ip),
                "port": port,
                "family": socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                "proto": socket.IPPROTO_TCP,
                "flags": socket.AI_NUMERICHOST,
            }
            for ip in addresses
        ]

    async def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class _Target:
    checked: CheckedURL
    url: yarl.URL  # what aiohttp is given: the same host as `checked`, verified
    text: str  # str(checked.url), kept: httpx renders it anew on every call
    origin: tuple[str, str, int | None]


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _is_redirect(status: int, headers: Mapping[str, str]) -> bool:
    return status in _REDIRECTS and "location" in headers


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


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int, truncate: bool) -> bytes:
    declared = response.headers.get("content-length", "")
    if not truncate and declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(f"the response body is larger than {max_bytes} bytes")
    parts: list[bytes] = []
    size = 0
    while chunk := await response.content.read(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            if not truncate:
                raise BodyTooLarge(f"the response body is larger than {max_bytes} bytes")
            parts.append(chunk[: len(chunk) - (size - max_bytes)])
            response.close()  # the rest is not wanted: drop the connection, not the pool
            break
        parts.append(chunk)
    return b"".join(parts)


def _map_error(exc: BaseException, host: str) -> OutboundError:
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, _Refused):
            return OutboundRefused(exc.os_error.reason)
        return OutboundUnreachable(f"could not connect to {host}")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return OutboundUnreachable(f"could not connect to {host}")
    if isinstance(exc, aiohttp.InvalidURL):
        return OutboundRefused("not a valid URL")
    if isinstance(exc, TimeoutError):
        return OutboundTimeout("the remote server did not answer in time")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return OutboundUnreachable("the response body could not be read or decoded")
    return OutboundUnreachable("the connection to the remote server failed")


class OutboundClient:
    """SSRF-safe HTTP for async code; make one per process (lifespan or worker runtime).

    `timeout` is the default total deadline of one `request` call: resolution, every
    redirect hop and the whole body. `connect_timeout` bounds each TCP/TLS connect. The
    aiohttp session is made on first use, on the loop that uses it.
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
        self.allowlist = allowlist or Allowlist()
        self.allow_private = allow_private
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.user_agent = user_agent
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        # check_url is pure but parses with httpx, which costs more than a pooled send;
        # a batch repeats the same few URLs. Names are still resolved per connection.
        self._target = functools.lru_cache(maxsize=4096)(self._target_uncached)

    def _target_uncached(self, url: str) -> _Target:
        checked = check_url(url, self.allowlist, allow_private=self.allow_private)
        try:
            target = yarl.URL(str(checked.url), encoded=True)
        except ValueError as exc:
            raise OutboundRefused("not a valid URL") from exc
        # aiohttp must connect to the very host the policy judged: refuse any disagreement
        # between httpx's parser (the policy's) and yarl's.
        if target.raw_host != checked.host or target.scheme != checked.scheme:
            raise OutboundRefused("the URL has an invalid host")
        return _Target(checked, target, str(checked.url), _origin(checked.url))

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=0,
                resolver=_CheckedResolver(self.allowlist, self.allow_private),
                ttl_dns_cache=60,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # No proxies or .netrc from the environment: both would bypass or leak.
                trust_env=False,
                # One client serves many users: never carry one user's cookies to another's.
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": self.user_agent},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout),
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        json: Any = None,
        max_redirects: int = 5,
        follow_redirects: bool = True,
        max_bytes: int = 5_000_000,
        truncate: bool = False,
        # The contract is a per-call total deadline; it is enforced inside with asyncio.timeout.
        timeout: float | None = None,  # noqa: ASYNC109
        origin_headers: Mapping[str, str] | None = None,
    ) -> OutboundResponse:
        """Send a request, following up to `max_redirects` checked redirects.

        `origin_headers` are sent only while the request stays on the first URL's origin
        (scheme, host, port); a redirect elsewhere drops them for the rest of the chain.

        `follow_redirects=False` hands a 3xx back as the answer (a webhook receiver's).
        `truncate=True` keeps the first `max_bytes` of a longer body instead of refusing it.
        Raises OutboundRefused (BodyTooLarge past `max_bytes`), OutboundTimeout when
        `timeout` seconds (default: the client's) pass, OutboundUnreachable.
        """
        total = self.timeout if timeout is None else timeout
        own_headers, body = _prepare_body(headers, content, json)
        origin_only = [(k, v) for k, v in (origin_headers or {}).items() if k.lower() not in _OWN_HEADERS]
        try:
            async with asyncio.timeout(total):
                return await self._exchange(
                    method.upper(),
                    url,
                    own_headers,
                    origin_only,
                    body,
                    max_redirects,
                    follow_redirects,
                    max_bytes,
                    truncate,
                )
        except TimeoutError as exc:
            raise OutboundTimeout(f"no complete response within {total:g} seconds") from exc

    # `request`'s own coroutine, not one wrapped around it: a delivery run sends thousands a
    # second, and each layer costs its frame on every suspension of the request.
    def get(self, url: str, **kwargs: Any) -> Coroutine[Any, Any, OutboundResponse]:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Coroutine[Any, Any, OutboundResponse]:
        return self.request("POST", url, **kwargs)

    async def _exchange(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        origin_only: list[tuple[str, str]],
        content: bytes | None,
        max_redirects: int,
        follow_redirects: bool,
        max_bytes: int,
        truncate: bool,
    ) -> OutboundResponse:
        target = self._target(url)
        # A caller's own headers (a user's cookie, say) go to the first URL's origin only:
        # once a redirect leaves it they are dropped for good, even if a later hop comes back.
        first_origin = target.origin
        redirects: list[str] = []
        while True:
            status, got, body = await self._send(
                method,
                target,
                headers + origin_only if origin_only else headers,
                content,
                max_bytes,
                truncate,
                follow_redirects,
            )
            if not (follow_redirects and _is_redirect(status, got)):
                return OutboundResponse(status, got, target.text, body, redirects)
            if len(redirects) >= max_redirects:
                raise OutboundRefused("too many redirects")
            try:
                following = target.checked.url.join(got["location"])
            except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
                raise OutboundRefused("redirect to an invalid URL") from exc
            previous = target
            try:
                target = self._target(str(following))
            except OutboundRefused as exc:
                raise OutboundRefused(f"redirect refused: {exc.reason}") from exc
            redirects.append(previous.text)
            # Fetch standard: 303 turns everything but HEAD into GET, 301/302 turn POST into
            # GET; 307/308 repeat the method and body.
            if (status == 303 and method not in ("GET", "HEAD")) or (
                status in (301, 302) and method == "POST"
            ):
                method, content = "GET", None
                headers = [(k, v) for k, v in headers if k.lower() not in _BODY_HEADERS]
            if target.origin != previous.origin:
                headers = [(k, v) for k, v in headers if k.lower() not in _CREDENTIAL_HEADERS]
            if target.origin != first_origin:
                origin_only = []

    async def _send(
        self,
        method: str,
        target: _Target,
        headers: list[tuple[str, str]],
        content: bytes | None,
        max_bytes: int,
        truncate: bool,
        follow_redirects: bool,
    ) -> tuple[int, Mapping[str, str], bytes]:
        try:
            async with self._get_session().request(
                method, target.url, headers=headers, data=content, allow_redirects=False
            ) as response:
                status, got = response.status, response.headers
                # A redirect's body is never used; a HEAD answer may declare a length it does not send.
                if method == "HEAD" or (follow_redirects and _is_redirect(status, got)):
                    return status, got, b""
                return status, got, await _read_capped(response, max_bytes, truncate)
        except OutboundError:
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # Our own total deadline arrives as a cancellation, not here; this is aiohttp's.
            raise _map_error(exc, target.checked.host) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
