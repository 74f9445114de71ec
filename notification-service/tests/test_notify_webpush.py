"""Web Push against a local push service; the test plays the browser."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time

import aiohttp
import jwt
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from notify_fakes import FakePushService, Scripted, b64url

from notification_service import webpush
from notification_service.webpush import (
    MAX_PLAINTEXT_BYTES,
    InvalidSubscription,
    InvalidVapidKey,
    PayloadTooLarge,
    VapidKey,
)
from shared import origin_of

SUBJECT = "mailto:ops@example.com"
SERVER_SECRET = "server-secret-for-tests-0123456789"


def _sub(endpoint: str = "https://push.example.net/p/abc") -> dict[str, object]:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {"endpoint": endpoint, "keys": {"p256dh": b64url(point), "auth": b64url(b"a" * 16)}}


# --- subscription validation -------------------------------------------------------------


def test_valid_subscription_parses() -> None:
    sub = webpush.parse_subscription(_sub())
    assert sub.endpoint == "https://push.example.net/p/abc"
    assert len(sub.p256dh) == 65 and len(sub.auth) == 16
    # Round trip through the stored form.
    assert webpush.parse_subscription(sub.to_json()) == sub


@pytest.mark.parametrize(
    "endpoint",
    [
        "ftp://push.example.net/x",
        "http://push.example.net/x",
        "https://user:pw@push.example.net/x",
        "https:///nohost",
        "not a url",
        "",
        "https://push.example.net/" + "a" * 3000,
    ],
)
def test_bad_endpoints_are_refused(endpoint: str) -> None:
    with pytest.raises(InvalidSubscription):
        webpush.parse_subscription(_sub(endpoint))


def test_plain_http_only_for_allowlisted_hosts() -> None:
    data = _sub("http://127.0.0.1:8089/push/x")
    with pytest.raises(InvalidSubscription, match="OUTBOUND_ALLOWLIST"):
        webpush.parse_subscription(data)
    allowed = webpush.parse_subscription(
        data, allowlisted=lambda host, port: (host, port) == ("127.0.0.1", 8089)
    )
    assert allowed.endpoint.startswith("http://127.0.0.1:8089")


def test_p256dh_must_be_a_point_on_the_curve() -> None:
    data = _sub()
    keys = data["keys"]
    assert isinstance(keys, dict)
    for bad in (
        b64url(b"\x04" + b"\x01" * 64),  # right shape, not on the curve
        b64url(b"\x04" + b"\x00" * 10),  # too short
        b64url(b"\x02" + b"\x01" * 32),  # compressed form
        "!!!not base64!!!",
    ):
        keys["p256dh"] = bad
        with pytest.raises(InvalidSubscription, match="p256dh"):
            webpush.parse_subscription(data)


@pytest.mark.parametrize("length", [0, 8, 15, 17, 32])
def test_auth_must_be_16_bytes(length: int) -> None:
    data = _sub()
    keys = data["keys"]
    assert isinstance(keys, dict)
    keys["auth"] = b64url(b"x" * length) if length else ""
    with pytest.raises(InvalidSubscription, match="auth"):
        webpush.parse_subscription(data)


def test_standard_base64_with_padding_is_tolerated() -> None:
    data = _sub()
    keys = data["keys"]
    assert isinstance(keys, dict)
    raw = webpush.b64url_decode(str(keys["p256dh"]))
    keys["p256dh"] = base64.b64encode(raw).decode()
    assert webpush.parse_subscription(data).p256dh == raw


# --- payload size -------------------------------------------------------------------------


def test_largest_plaintext_encrypts_to_exactly_4096_bytes() -> None:
    sub = webpush.parse_subscription(_sub())
    assert MAX_PLAINTEXT_BYTES == 3993
    body = webpush.encrypt_payload(b"x" * MAX_PLAINTEXT_BYTES, sub)
    assert len(body) == 4096
    assert len(webpush.encrypt_payload(b"x", sub)) == 86 + 1 + 17


def test_one_byte_more_is_refused_up_front() -> None:
    sub = webpush.parse_subscription(_sub())
    with pytest.raises(PayloadTooLarge, match="3993"):
        webpush.check_payload_size(b"x" * (MAX_PLAINTEXT_BYTES + 1))
    with pytest.raises(PayloadTooLarge):
        webpush.encrypt_payload(b"x" * (MAX_PLAINTEXT_BYTES + 1), sub)


# --- VAPID keys ---------------------------------------------------------------------------


def test_vapid_key_from_raw_pem_and_der() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    raw = key.private_numbers().private_value.to_bytes(32, "big")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    expected = b64url(
        key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )
    for text in (b64url(raw), pem, b64url(der)):
        assert VapidKey.from_config(text).public_key_b64 == expected
    assert VapidKey.from_config(b64url(raw)).private_raw_b64() == b64url(raw)


def test_bad_vapid_key_is_refused_without_echoing_it() -> None:
    secret_looking = "c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1ub3QtbGVhaw"
    with pytest.raises(webpush.InvalidVapidKey) as info:
        VapidKey.from_config(secret_looking)
    assert secret_looking not in str(info.value)
    other_curve = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(webpush.InvalidVapidKey):
        VapidKey.from_config(other_curve.decode())


def test_vapid_jwt_claims_and_reuse() -> None:
    vapid = VapidKey.generate()
    now = time.time()
    header = vapid.authorization("https://fcm.example.com:443/fcm/send/xyz", SUBJECT, now=now)
    assert header.startswith("vapid t=") and f", k={vapid.public_key_b64}" in header
    token = header.split("t=", 1)[1].split(",", 1)[0]
    claims = jwt.decode(token, vapid.public_key, algorithms=["ES256"], audience="https://fcm.example.com")
    assert claims["sub"] == SUBJECT
    assert now < claims["exp"] <= now + 24 * 3600
    # Same origin: the same token until it nears expiry; then a fresh one.
    assert vapid.token("https://fcm.example.com/other", SUBJECT, now=now + 60) == token
    later = vapid.token("https://fcm.example.com/other", SUBJECT, now=now + 11.5 * 3600)
    assert later != token


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://Push.Example.com/a/b?c", "https://push.example.com"),
        ("https://push.example.com:443/a", "https://push.example.com"),
        ("https://push.example.com:8443/a", "https://push.example.com:8443"),
        ("http://127.0.0.1:8080/push/x", "http://127.0.0.1:8080"),
        ("https://[::1]:9000/x", "https://[::1]:9000"),
    ],
)
def test_origin(url: str, origin: str) -> None:
    assert origin_of(url) == origin


def test_subject_must_be_mailto_or_https() -> None:
    assert webpush.validate_subject(SUBJECT) == SUBJECT
    assert webpush.validate_subject("https://example.com/contact")
    for bad in ("ops@example.com", "http://example.com", "mailto:"):
        with pytest.raises(ValueError):
            webpush.validate_subject(bad)


def test_topic_is_short_base64url_and_stable() -> None:
    topic = webpush.topic_for("alice", "Build failed", "main is red")
    assert len(topic) == 32
    assert webpush.validate_topic(topic) == topic
    assert topic == webpush.topic_for("alice", "Build failed", "main is red")
    assert topic != webpush.topic_for("alice", "Build failed", "main is green")
    with pytest.raises(ValueError):
        webpush.validate_topic("has space")


async def test_generated_key_is_shared_through_redis(
    caplog: pytest.LogCaptureFixture, notify_redis_url: str
) -> None:
    client = aioredis.Redis.from_url(notify_redis_url)
    name = f"test:notify:vapid:{secrets.token_hex(6)}"
    try:
        with caplog.at_level(logging.WARNING):
            first = await webpush.load_vapid_key(client, None, server_secret=SERVER_SECRET, key=name)
            second = await webpush.load_vapid_key(client, None, server_secret=SERVER_SECRET, key=name)
        assert first.public_key_b64 == second.public_key_b64
        assert any("VAPID_PRIVATE_KEY is not set" in r.getMessage() for r in caplog.records)
        assert all(first.private_raw_b64() not in r.getMessage() for r in caplog.records)
        # Sealed at rest: the stored value is not the key, and another server secret cannot open it.
        stored = await client.get(name)
        assert stored is not None and first.private_raw_b64().encode() not in stored
        with pytest.raises(InvalidVapidKey, match="does not unseal"):
            await webpush.load_vapid_key(client, None, server_secret="another-server-secret-0123", key=name)
        configured = VapidKey.generate()
        chosen = await webpush.load_vapid_key(
            client, configured.private_raw_b64(), server_secret=SERVER_SECRET, key=name
        )
        assert chosen.public_key_b64 == configured.public_key_b64
    finally:
        await client.delete(name)
        await client.aclose()


# --- against the local push service ----------------------------------------------------------


async def _post(request: webpush.PushRequest) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(request.url, data=request.body, headers=request.headers) as response,
    ):
        return response.status


def _allow_local(host: str, port: int) -> bool:
    return host == "127.0.0.1"


async def test_push_is_decrypted_by_the_browser(push_service: FakePushService) -> None:
    browser = push_service.new_browser()
    sub = webpush.parse_subscription(browser.subscription(), allowlisted=_allow_local)
    vapid = VapidKey.generate()
    payload = json.dumps({"title": "Hi", "message": "é ✓ " * 200}).encode()
    topic = webpush.topic_for("n1")
    request = webpush.build_request(
        sub, payload, vapid=vapid, subject=SUBJECT, ttl=3600, urgency="high", topic=topic
    )
    assert await _post(request) == 201
    assert push_service.rejections == []
    assert browser.received == [payload]
    assert browser.topics == [topic]
    assert browser.urgencies == ["high"]
    assert browser.ttls == [3600]


def test_an_urgency_outside_rfc_8030_is_refused_before_anything_is_encrypted() -> None:
    sub = webpush.Subscription(
        endpoint="https://push.example.test/x", p256dh=b"\x04" + b"\x01" * 64, auth=b"a" * 16
    )
    with pytest.raises(ValueError, match=r"urgency must be one of \['high', 'low', 'normal', 'very-low'\]"):
        webpush.build_request(
            sub, b"{}", vapid=VapidKey.generate(), subject=SUBJECT, ttl=60, urgency="urgent"
        )


async def test_largest_payload_is_accepted(push_service: FakePushService) -> None:
    browser = push_service.new_browser()
    sub = webpush.parse_subscription(browser.subscription(), allowlisted=_allow_local)
    payload = b"y" * MAX_PLAINTEXT_BYTES
    request = webpush.build_request(sub, payload, vapid=VapidKey.generate(), subject=SUBJECT, ttl=60)
    assert await _post(request) == 201
    assert browser.received == [payload]


async def test_push_service_refuses_forged_vapid(push_service: FakePushService) -> None:
    browser = push_service.new_browser()
    sub = webpush.parse_subscription(browser.subscription(), allowlisted=_allow_local)
    signer, claimed = VapidKey.generate(), VapidKey.generate()
    request = webpush.build_request(sub, b"{}", vapid=signer, subject=SUBJECT, ttl=60)
    forged = request.headers["Authorization"].replace(signer.public_key_b64, claimed.public_key_b64)
    request.headers["Authorization"] = forged
    assert await _post(request) == 401
    assert browser.received == []
    assert push_service.rejections == ["JWT refused: InvalidSignatureError"]


async def test_push_service_refuses_wrong_audience(push_service: FakePushService) -> None:
    browser = push_service.new_browser()
    sub = webpush.parse_subscription(browser.subscription(), allowlisted=_allow_local)
    vapid = VapidKey.generate()
    request = webpush.build_request(sub, b"{}", vapid=vapid, subject=SUBJECT, ttl=60)
    request.headers["Authorization"] = vapid.authorization("https://elsewhere.example", SUBJECT)
    assert await _post(request) == 401
    assert push_service.rejections == ["JWT refused: InvalidAudienceError"]


async def test_push_service_requires_ttl(push_service: FakePushService) -> None:
    browser = push_service.new_browser()
    sub = webpush.parse_subscription(browser.subscription(), allowlisted=_allow_local)
    request = webpush.build_request(sub, b"{}", vapid=VapidKey.generate(), subject=SUBJECT, ttl=60)
    del request.headers["TTL"]
    assert await _post(request) == 400
    assert browser.received == []


async def test_push_service_can_be_scripted(push_service: FakePushService) -> None:
    browser = push_service.new_browser()
    sub = webpush.parse_subscription(browser.subscription(), allowlisted=_allow_local)
    push_service.script(browser, Scripted(429, {"Retry-After": "3"}), Scripted(410))
    vapid = VapidKey.generate()
    statuses = []
    for _ in range(3):
        request = webpush.build_request(sub, b"{}", vapid=vapid, subject=SUBJECT, ttl=60)
        statuses.append(await _post(request))
    assert statuses == [429, 410, 201]
    assert len(browser.received) == 1
