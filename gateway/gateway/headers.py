"""What the gateway does to header fields on the way through, and the upstream URL.

Hop-by-hop fields (RFC 9110 section 7.6.1) and fields a client could use to pass for someone
else are dropped; the forwarding fields are rebuilt; the service's URL keeps the raw path as
the client sent it. Pure functions on the hot path: no awaits, no framework objects.
"""

from __future__ import annotations

import aiohttp
from starlette.types import Scope
from yarl import URL

from gateway.routing import Route
from shared import BadRequest, PayloadTooLarge, request_id_var

# RFC 9110 section 7.6.1 hop-by-hop fields, plus the legacy ones proxies still meet.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)

# Fields that claim an identity, a client address or a rewritten request. Only the gateway may
# say these things to a service, so whatever a client sent under these names is dropped.
SPOOFABLE = frozenset(
    {
        b"x-user-id",
        b"x-user",
        b"x-user-email",
        b"x-user-roles",
        b"x-email",
        b"x-remote-user",
        b"remote-user",
        b"x-principal",
        b"x-sub",
        b"x-subject",
        b"x-scope",
        b"x-scopes",
        b"x-roles",
        b"x-groups",
        b"x-tenant-id",
        b"x-real-ip",
        b"x-client-ip",
        b"x-cluster-client-ip",
        b"true-client-ip",
        b"cf-connecting-ip",
        b"fastly-client-ip",
        b"forwarded",
        b"x-original-forwarded-for",
        b"x-original-url",
        b"x-original-uri",
        b"x-rewrite-url",
        b"x-http-method-override",
        b"x-http-method",
        b"x-method-override",
    }
)
# x-auth covers x-auth-*, x-authenticated-*, x-authorization; x-forwarded- covers -user,
# -email, -groups, -access-token (oauth2-proxy's names) as well as -for/-host/-proto, which
# the gateway writes itself. x-service- covers x-service-token, the credential task-service's
# scheduler shows the services' internal endpoints: it never comes from a client.
SPOOFABLE_PREFIXES = (
    b"x-auth",
    b"x-forwarded-",
    b"x-jwt",
    b"x-gateway-",
    b"x-internal-",
    b"x-service-",
    b"proxy-",
)

# Rebuilt by the gateway or by aiohttp for the upstream connection.
REBUILT = frozenset({b"host", b"content-length", b"x-request-id", b"expect"})

REQUEST_DROP = HOP_BY_HOP | SPOOFABLE | REBUILT
TRUSTED_FORWARDING = frozenset({b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto"})
# uvicorn writes its own Date (and no Server header: it is turned off).
RESPONSE_DROP = HOP_BY_HOP | frozenset({b"date", b"server"})


def response_head(
    resp: aiohttp.ClientResponse, extra: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The service's response fields less hop-by-hop ones (and those its Connection names), then
    the gateway's own (`extra`: the rate-limit fields)."""
    out = [(name.lower(), value) for name, value in resp.raw_headers if name.lower() not in RESPONSE_DROP]
    listed = resp.headers.get("Connection")
    if listed:
        hop = {t.strip().lower().encode("latin-1") for t in listed.split(",")}
        out = [h for h in out if h[0] not in hop]
    out.extend(extra)
    return out


def declared_length(content_length: bytes, max_body: int) -> int:
    """The Content-Length a client declared, refused when it is not a number or over the limit."""
    if not content_length.isdigit():
        raise BadRequest("Content-Length must be a number.")
    length = int(content_length)
    if length > max_body:
        raise PayloadTooLarge(f"The request body is larger than {max_body} bytes.")
    return length


def add_forwarding(
    headers: list[tuple[str, str]], forwarded: dict[bytes, bytes], host: bytes, client_ip: str, scheme: str
) -> None:
    """X-Forwarded-For/-Host/-Proto (extending trusted ones a proxy in front sent) and X-Request-Id."""
    xff = forwarded.get(b"x-forwarded-for")
    headers.append(("x-forwarded-for", f"{xff.decode('latin-1')}, {client_ip}" if xff else client_ip))
    headers.append(("x-forwarded-host", forwarded.get(b"x-forwarded-host", host).decode("latin-1")))
    headers.append(
        ("x-forwarded-proto", forwarded.get(b"x-forwarded-proto", b"").decode("latin-1") or scheme)
    )
    rid = request_id_var.get()
    if rid:
        headers.append(("x-request-id", rid))


def upstream_url(route: Route, scope: Scope) -> URL:
    """The service's URL for this request: its base, the raw path as the client sent it, the query."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    target = route.base_url + raw_path.decode("latin-1")
    query: bytes = scope["query_string"]
    if query:
        target += "?" + query.decode("latin-1")
    return URL(target, encoded=True)
