"""Standard Webhooks: `whsec_` secrets, signing and verification.

Used for notification webhooks and for task callbacks alike.

The scheme (standardwebhooks.com): the signed content is `{id}.{timestamp}.{body}`,
HMAC-SHA256 keyed with the base64-decoded part of the secret after `whsec_`, and the
header carries `v1,<base64 signature>` (several, space-separated, during a key rotation).

Signing is the scheme's own Python package (`standardwebhooks.Webhook.sign`), so what we send
is what its receivers compute; a test checks both ways against its `Webhook.verify`. It costs
1.1 to 2 times the HMAC written out here before (measured 7 to 14 us against 4 to 8 us a
signature for a 250-byte body on the 2-core dev machine; it builds a datetime and decodes and
re-encodes the body): a few microseconds next to a delivery's HTTP exchange of several hundred,
and the notification benchmark's ceiling signs the same way. Around it we keep:
- `secret_key()`, which refuses a secret that is not base64 or holds fewer than 24 bytes (the
  package pads and decodes whatever it is given);
- `verify()`, for our receivers and tests: the package's `verify` has a fixed five-minute
  tolerance and no clock to pass in, and lets a malformed signature header escape as
  ValueError rather than its verification error. Ours compares against the package's signature.
Bodies are JSON, so UTF-8: the package signs text.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks import Webhook

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


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{ts}.{body}">`."""
    key = secret if isinstance(secret, bytes) else secret_key(secret)
    signature: str = Webhook(key).sign(msg_id, datetime.fromtimestamp(int(timestamp), UTC), body.decode())
    return signature


def signed_headers(
    secret: str | bytes, msg_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """The three headers a Standard Webhooks receiver checks."""
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
