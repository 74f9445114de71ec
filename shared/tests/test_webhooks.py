"""shared.webhooks against the scheme's own package: what we sign, its Webhook.verify accepts,
and what it signs, our verify accepts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime

import pytest
import standardwebhooks

from shared import webhooks

BODIES = [
    b'{"test": 2432232314}',
    b'{"type":"notification.created","data":{"title":"caf\xc3\xa9 \xe2\x82\xac","message":"m"}}',
    b"",
    b'{"n": "' + b"x" * 20_000 + b'"}',
]


@pytest.mark.parametrize("body", BODIES, ids=["spec", "utf8", "empty", "20k"])
def test_our_signature_verifies_with_the_package(body: bytes) -> None:
    secret = webhooks.generate_secret()
    headers = webhooks.signed_headers(secret, "msg_" + secrets.token_urlsafe(18), body)
    assert standardwebhooks.Webhook(secret).verify(body, headers, json_parse=False) is None


@pytest.mark.parametrize("body", BODIES, ids=["spec", "utf8", "empty", "20k"])
def test_the_package_signature_verifies_with_ours(body: bytes) -> None:
    secret = webhooks.generate_secret()
    msg_id = "msg_" + secrets.token_urlsafe(18)
    ts = int(time.time())
    signature = standardwebhooks.Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, UTC), body.decode())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}
    webhooks.verify(secret, headers, body)
    assert webhooks.sign(secret, msg_id, ts, body) == signature


def test_signature_is_the_hmac_the_scheme_defines() -> None:
    """Pinned independently of both implementations: HMAC-SHA256 over `{id}.{ts}.{body}`."""
    secret = webhooks.generate_secret()
    key = base64.b64decode(secret.removeprefix("whsec_"))
    body = BODIES[1]
    digest = hmac.new(key, b"msg_1.1700000000." + body, hashlib.sha256).digest()
    assert webhooks.sign(secret, "msg_1", 1700000000, body) == "v1," + base64.b64encode(digest).decode()
    assert webhooks.sign(key, "msg_1", 1700000000, body) == webhooks.sign(secret, "msg_1", 1700000000, body)


def test_one_signer_signs_many_bodies_as_the_package_does() -> None:
    """A Signer keys its HMAC once: each signature must still be its own message's alone."""
    secret = webhooks.generate_secret()
    signer = webhooks.Signer(secret)
    package = standardwebhooks.Webhook(secret)
    ts = int(time.time())
    for i, body in enumerate(BODIES * 2):
        msg_id = f"msg_{i}"
        expected = package.sign(msg_id, datetime.fromtimestamp(ts, UTC), body.decode())
        assert signer.sign(msg_id, ts, body) == expected
        headers = webhooks.signed_headers(signer, msg_id, body, timestamp=ts)
        assert headers["webhook-signature"] == expected
        assert package.verify(body, headers, json_parse=False) is None


def test_a_tampered_body_fails_the_package_verify() -> None:
    secret = webhooks.generate_secret()
    headers = webhooks.signed_headers(secret, "msg_1", b'{"a":1}')
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(b'{"a":2}', headers, json_parse=False)


def test_a_short_secret_is_refused_before_signing() -> None:
    """The package would sign with any bytes it can decode; our secret_key() holds the line."""
    short = "whsec_" + base64.b64encode(b"k" * 16).decode()
    with pytest.raises(ValueError, match="24 to 64 bytes"):
        webhooks.sign(short, "msg_1", 1700000000, b"{}")
    with pytest.raises(ValueError, match="24 to 64 bytes"):
        webhooks.Signer(short)
