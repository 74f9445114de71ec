"""Standard Webhooks: `whsec_` secrets, signing and verification.

Used for notification webhooks and for task callbacks alike.

The scheme (standardwebhooks.com): the signed content is `{id}.{timestamp}.{body}`,
HMAC-SHA256 keyed with the base64-decoded part of the secret after `whsec_`, and the
header carries `v1,<base64 signature>` (several, space-separated, during a key rotation).

Signing is the HMAC the scheme defines, keyed once per secret (`Signer`): a delivery run signs
thousands of bodies with the same few keys, and keying an HMAC costs two SHA-256 blocks. The
scheme's own Python package (`standardwebhooks`) is what our tests check against, both ways
(what we sign its `Webhook.verify` accepts; what it signs, ours produces byte for byte). We sign
with it no longer: it builds a datetime, decodes and re-encodes the body and keys a fresh HMAC
per signature, 29 against 9 us a signature for a 250-byte body measured side by side (on a busy
2-core machine), a few per cent of a webhook delivery's CPU. Around the signing we keep:
- `secret_key()`, which refuses a secret that is not base64 or holds fewer than 24 bytes;
- `verify()`, for our receivers and tests: the package's `verify` has a fixed five-minute
  tolerance and no clock to pass in, and lets a malformed signature header escape as
  ValueError rather than its verification error.
Bodies are signed as the bytes sent (JSON, so UTF-8: what the package signs as text).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's prefix, not a secret
SECRET_BYTES = 32
# Receivers refuse timestamps further than this from their clock (replay protection).
DEFAULT_TOLERANCE_SECONDS = 5 * 60
_MIN_SECRET_BYTES = 24
_MAX_SECRET_BYTES = 64


class WebhookVerificationError(ValueError):
    """The headers or signature do not prove the body came from the holder of the secret."""


def generate_secret() -> str:
    """A fresh secret, `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_` secret."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    if not _MIN_SECRET_BYTES <= len(key) <= _MAX_SECRET_BYTES:
        raise ValueError("a webhook secret holds 24 to 64 bytes")
    return key


class Signer:
    """Signs with one key: its HMAC is keyed once and copied for each message."""

    __slots__ = ("_keyed",)

    def __init__(self, secret: str | bytes) -> None:
        key = secret if isinstance(secret, bytes) else secret_key(secret)
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def sign(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """`v1,<base64 HMAC-SHA256 of "{id}.{ts}.{body}">`."""
        mac = self._keyed.copy()
        mac.update(f"{msg_id}.{int(timestamp)}.".encode())
        mac.update(body)
        return "v1," + base64.b64encode(mac.digest()).decode("ascii")


def sign(secret: str | bytes | Signer, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{ts}.{body}">`."""
    signer = secret if isinstance(secret, Signer) else Signer(secret)
    return signer.sign(msg_id, timestamp, body)


def signed_headers(
    secret: str | bytes | Signer, msg_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """The three headers a Standard Webhooks receiver checks. Pass a `Signer` to sign many
    bodies with one secret."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
    }


def verify(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise WebhookVerificationError unless one v1 signature matches and the time is fresh."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    ts_text = lowered.get("webhook-timestamp")
    sig_header = lowered.get("webhook-signature")
    if not msg_id or not ts_text or not sig_header:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        ts = int(ts_text)
    except ValueError as exc:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from exc
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    expected = sign(secret, msg_id, ts, body).split(",", 1)[1]
    for candidate in sig_header.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return
    raise WebhookVerificationError("no matching v1 signature")
