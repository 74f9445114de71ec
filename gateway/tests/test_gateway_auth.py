"""Identity at the front door: forged, expired and malformed tokens never reach a service."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gateway_harness import SECRET, GatewayFactory, RunningGateway
from gateway_upstream import StandInService

API = "/smart_application/tasks"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A token built by hand, so tests can do what a careful library refuses to."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if key is None:
        return signing_input + "."
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "mallory", "scope": "tasks cache admin", "iat": now, "exp": now + 600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


async def status_of(
    http: aiohttp.ClientSession, gw: RunningGateway, token: str | None, path: str = "/cache/k"
) -> tuple[int, Mapping[str, str], dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with http.get(f"{gw.url}{API}{path}", headers=headers) as resp:
        return resp.status, resp.headers, await resp.json()


async def assert_refused(
    http: aiohttp.ClientSession, gw: RunningGateway, upstream: StandInService, token: str | None
) -> str:
    before = len(upstream.seen)
    status, headers, body = await status_of(http, gw, token)
    assert status == 401, body
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert body["error"]["code"] == "unauthorized"
    assert len(upstream.seen) == before, "a refused request reached the service"
    message: str = body["error"]["message"]
    return message


async def test_valid_token_passes(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    status, _, _ = await status_of(http, gateway, gateway.token())
    assert status == 200
    assert len(upstream.seen) == 1


async def test_missing_and_malformed_authorization(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    await assert_refused(http, gateway, upstream, None)
    for header in ("Basic YWxpY2U6cHc=", "Bearer", "Bearer  ", "token abc", "Bearer not.a.jwt"):
        before = len(upstream.seen)
        async with http.get(f"{gateway.url}{API}/cache/k", headers={"Authorization": header}) as resp:
            assert resp.status == 401, header
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert len(upstream.seen) == before


async def test_alg_none_is_refused(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    for alg in ("none", "None", "NONE"):
        await assert_refused(http, gateway, upstream, forge({"alg": alg, "typ": "JWT"}, claims(), None))


async def test_token_signed_with_another_secret_is_refused(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    token = forge({"alg": "HS256", "typ": "JWT"}, claims(), b"not-the-gateway-secret")
    await assert_refused(http, gateway, upstream, token)
    # Positive control: the same forging code with the right secret is accepted.
    good = forge({"alg": "HS256", "typ": "JWT"}, claims(), SECRET.encode())
    assert (await status_of(http, gateway, good))[0] == 200


async def test_hs_rs_algorithm_confusion_is_refused(
    start_gateway: GatewayFactory,
    upstream: StandInService,
    http: aiohttp.ClientSession,
    rsa_keys: tuple[str, str],
) -> None:
    private, public = rsa_keys
    gw = await start_gateway(jwt_algorithm="RS256", jwt_public_key=public)
    # The classic attack: HMAC-sign with the RSA public key (which the attacker knows) as secret.
    for variant in (public, public.strip(), public.replace("\n", "\\n")):
        token = forge({"alg": "HS256", "typ": "JWT"}, claims(), variant.encode())
        await assert_refused(http, gw, upstream, token)
    await assert_refused(http, gw, upstream, forge({"alg": "none"}, claims(), None))
    # Positive control: a real RS256 token from the private key is accepted.
    real = jwt.encode(claims(), private, algorithm="RS256")
    assert (await status_of(http, gw, real))[0] == 200


async def test_expired_and_not_yet_valid_tokens_are_refused(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    now = int(time.time())
    expired = jwt.encode(claims(iat=now - 120, exp=now - 60), SECRET, algorithm="HS256")
    assert "expired" in await assert_refused(http, gateway, upstream, expired)
    future = jwt.encode(claims(nbf=now + 600), SECRET, algorithm="HS256")
    assert "not valid yet" in await assert_refused(http, gateway, upstream, future)
    no_exp = jwt.encode(claims(exp=None), SECRET, algorithm="HS256")
    await assert_refused(http, gateway, upstream, no_exp)


async def test_token_without_subject_is_refused(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    for sub in (None, "", 42, ["alice"], "x" * 300):
        token = forge({"alg": "HS256", "typ": "JWT"}, claims(sub=sub), SECRET.encode())
        await assert_refused(http, gateway, upstream, token)


async def test_tampered_tokens_are_refused(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    token = gateway.token(sub="alice", scopes="tasks")
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    await assert_refused(http, gateway, upstream, f"{header}.{payload}.{flipped}")
    # Payload swapped for one granting admin to someone else, original signature kept.
    evil = b64(json.dumps(claims(sub="admin", scope="admin")).encode())
    await assert_refused(http, gateway, upstream, f"{header}.{evil}.{signature}")
    await assert_refused(http, gateway, upstream, f"{header}.{payload}.")


async def test_oversized_tokens_and_headers_are_refused(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    big = jwt.encode(claims(pad="x" * 20_000), SECRET, algorithm="HS256")
    assert "too long" in await assert_refused(http, gateway, upstream, big)
    before = len(upstream.seen)
    # Headers far past any sane size: 431 (httptools itself would take megabytes).
    for n in (200_000, 2_000_000):
        async with http.get(
            f"{gateway.url}{API}/cache/k", headers={"Authorization": "Bearer " + "a" * n}
        ) as resp:
            assert resp.status == 431
            assert (await resp.json())["error"]["code"] == "headers_too_large"
    assert len(upstream.seen) == before
    # ...and the gateway still serves the next request.
    assert (await status_of(http, gateway, gateway.token()))[0] == 200


async def test_issuer_and_audience_are_checked_when_configured(
    start_gateway: GatewayFactory, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(jwt_issuer="https://id.smartapp.test", jwt_audience="smartapp")
    good = dict(iss="https://id.smartapp.test", aud="smartapp")
    assert (await status_of(http, gw, jwt.encode(claims(**good), SECRET, algorithm="HS256")))[0] == 200
    for bad in (
        dict(good, aud="another-api"),
        dict(good, iss="https://evil.test"),
        dict(good, aud=None),
        dict(good, iss=None),
    ):
        await assert_refused(http, gw, upstream, jwt.encode(claims(**bad), SECRET, algorithm="HS256"))


async def test_scope_known_to_the_gateway_is_403(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    for path, scope in (
        ("/cache/k", "cache"),
        ("/background-scraping/", "scrape"),
        ("/batch-notifications/", "notify:send"),
    ):
        before = len(upstream.seen)
        status, _, body = await status_of(http, gateway, gateway.token(scopes="tasks"), path)
        assert status == 403
        assert body["error"]["code"] == "forbidden" and scope in body["error"]["message"]
        assert len(upstream.seen) == before
    # admin holds every scope; routes whose scope the gateway does not know pass to the service.
    assert (await status_of(http, gateway, gateway.token(scopes="admin"), "/cache/k"))[0] == 200
    assert (await status_of(http, gateway, gateway.token(scopes=""), "/task-status/t1"))[0] == 200


async def test_remembered_token_still_expires(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    token = gateway.token(ttl_seconds=1)
    assert (await status_of(http, gateway, token))[0] == 200
    assert (await status_of(http, gateway, token))[0] == 200  # served from memory
    await asyncio.sleep(2.1)
    assert "expired" in await assert_refused(http, gateway, upstream, token)


async def test_only_the_vapid_public_key_is_open_without_a_token(
    gateway: RunningGateway, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    for path in ("/webpush/vapid-public-key", "/webpush/vapid-public-key/"):
        async with http.get(f"{gateway.url}{API}{path}") as resp:
            assert resp.status == 200, path
            assert "RateLimit-Remaining" in resp.headers
        assert "authorization" not in upstream.last().headers
    async with http.post(f"{gateway.url}{API}/webpush/vapid-public-key") as resp:
        assert resp.status == 401
    async with http.get(f"{gateway.url}{API}/webpush/other") as resp:
        assert resp.status == 401
    # A token that is sent is still checked, even on the open path.
    async with http.get(
        f"{gateway.url}{API}/webpush/vapid-public-key", headers={"Authorization": "Bearer forged"}
    ) as resp:
        assert resp.status == 401
