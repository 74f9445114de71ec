"""The workers' HTTP client for deliveries: aiohttp under the platform's SSRF rules.

The rules are the shared outbound module's (`shared._outbound`): `check_url` judges the URL
and any IP-literal host; every name is resolved through `resolve_checked`, which refuses
the whole answer if any address is forbidden, and aiohttp connects only to the addresses
that resolver returned (a rebinding DNS answer is never consulted again). Deliveries never
follow redirects: a 3xx is the receiver's answer.

Why not `SafeAsyncClient`: it is built on httpx, whose pool serves a few hundred requests a
second at 64 in flight on this hardware against several thousand for aiohttp, and it never
keeps TLS connections alive; a batch of 10,000 deliveries needs both. aiohttp pools by host
name (SNI and certificate checks use the name), so keep-alive is safe here.
"""

from __future__ import annotations

import functools
import socket
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from notification_service.classify import TransportError
from shared._outbound import (
    Allowlist,
    CheckedURL,
    OutboundRefused,
    OutboundUnreachable,
    check_url,
    resolve_checked,
)

MAX_RESPONSE_BYTES = 64 * 1024


class DeliveryError(Exception):
    """No usable answer; `reason` is safe to show the notification's sender."""

    def __init__(self, kind: TransportError, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class _Refused(OSError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CheckedResolver(AbstractResolver):
    """Resolves through the shared rules: forbidden addresses never reach the connector."""

    def __init__(self, allowlist: Allowlist) -> None:
        self.allowlist = allowlist

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            addresses = await resolve_checked(host, port, self.allowlist)
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
class DeliveryResponse:
    status: int
    retry_after: str | None


class DeliveryClient:
    """One per worker process: a pooled aiohttp session made on the process's event loop."""

    def __init__(
        self,
        allowlist: Allowlist,
        *,
        timeout: float,
        connect_timeout: float,
        max_connections: int,
        user_agent: str,
    ) -> None:
        self.allowlist = allowlist
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        # check_url is pure (no DNS) but parses with httpx, which costs more than the send
        # itself; a batch repeats the same few URLs. Names are still resolved per connection.
        self._check = functools.lru_cache(maxsize=4096)(self._check_uncached)

    def _check_uncached(self, url: str) -> CheckedURL:
        return check_url(url, self.allowlist)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=0,
                resolver=CheckedResolver(self.allowlist),
                ttl_dns_cache=60,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # No proxies or .netrc from the environment; no cookies carried between users.
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": self.user_agent},
                auto_decompress=False,
            )
        return self._session

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> DeliveryResponse:
        try:
            checked = self._check(url)
        except OutboundRefused as exc:
            raise DeliveryError(TransportError.BLOCKED, exc.reason) from None
        total = self.timeout
        client_timeout = aiohttp.ClientTimeout(total=total, sock_connect=min(self.connect_timeout, total))
        try:
            async with self._get_session().post(
                # The canonical form: numeric hosts as dotted quads, no fragment.
                str(checked.url),
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=client_timeout,
            ) as response:
                await self._drain(response)
                return DeliveryResponse(response.status, response.headers.get("Retry-After"))
        except TimeoutError:
            raise DeliveryError(
                TransportError.TIMEOUT, f"no complete response within {total:g} seconds"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, _Refused):
                raise DeliveryError(TransportError.BLOCKED, exc.os_error.reason) from None
            raise DeliveryError(TransportError.CONNECT, "the connection to the receiver failed") from None
        except aiohttp.InvalidURL:
            raise DeliveryError(TransportError.BLOCKED, "not a valid URL") from None
        except (aiohttp.ClientError, OSError):
            raise DeliveryError(TransportError.CONNECT, "the exchange with the receiver failed") from None

    @staticmethod
    async def _drain(response: aiohttp.ClientResponse) -> None:
        """Read a small body so the connection is reused; drop the connection on a big one."""
        remaining = MAX_RESPONSE_BYTES
        while remaining > 0:
            chunk = await response.content.read(min(remaining, 16 * 1024))
            if not chunk:
                return
            remaining -= len(chunk)
        response.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> DeliveryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
