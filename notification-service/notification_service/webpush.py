"""Web Push: RFC 8030 headers, RFC 8291 payload encryption, RFC 8292 VAPID.

Our own code on `http_ece` and `cryptography` rather than pywebpush, whose defaults
(ttl=0, no timeout, a claims dict it mutates) are wrong for a delivery ledger.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args
from urllib.parse import urlsplit

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from redis.asyncio import Redis

from shared import Sealer, SealError, origin_of

log = logging.getLogger(__name__)

# RFC 8291 section 4: a push service need accept no body larger than 4096 bytes.
MAX_ENCRYPTED_BYTES = 4096
RECORD_SIZE = 4096
# aes128gcm header: salt (16) + rs (4) + idlen (1) + keyid = sender's public key (65).
_HEADER_BYTES = 16 + 4 + 1 + 65
# One record: the plaintext, a 0x02 delimiter and a 16-byte AEAD tag.
_RECORD_OVERHEAD = 1 + 16
MAX_PLAINTEXT_BYTES = MAX_ENCRYPTED_BYTES - _HEADER_BYTES - _RECORD_OVERHEAD  # 3993

# RFC 8030 leaves the TTL cap to the push service; common ones cap at 28 days.
MAX_TTL_SECONDS = 28 * 24 * 3600
MAX_TOPIC_LENGTH = 32
MAX_ENDPOINT_LENGTH = 2048
# RFC 8292 section 2: exp no more than 24 hours ahead; we sign for 12 and renew early.
VAPID_TOKEN_SECONDS = 12 * 3600
_VAPID_RENEW_BEFORE_SECONDS = 3600

VAPID_REDIS_KEY = "notify:vapid:private_key"
# The HKDF info of the key that seals a generated VAPID key in Redis.
VAPID_KEY_PURPOSE = "smart_application/notifications/vapid-key/v1"


# RFC 8030 section 5.3; the API's `urgency` field takes the same words.
Urgency = Literal["very-low", "low", "normal", "high"]
URGENCIES: frozenset[str] = frozenset(get_args(Urgency))


class InvalidSubscription(ValueError):
    """A Web Push subscription that cannot be used; the message is safe to show the caller."""


class PayloadTooLarge(ValueError):
    """The plaintext would not fit one 4096-byte aes128gcm message."""


class InvalidVapidKey(ValueError):
    """VAPID_PRIVATE_KEY could not be read as a P-256 private key."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(value: str) -> bytes:
    """Decode base64url with or without padding; browsers send it unpadded."""
    if not isinstance(value, str) or not value:
        raise ValueError("empty base64url value")
    # Browsers' PushSubscription.toJSON() is base64url; tolerate standard base64 too.
    cleaned = value.strip().replace("+", "-").replace("/", "_").rstrip("=")
    try:
        return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


class AllowList(Protocol):
    """Says whether host:port may be reached although it is private or plain http."""

    def __call__(self, host: str, port: int) -> bool: ...


def _nothing_allowed(host: str, port: int) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class Subscription:
    """A browser's PushSubscription: where to post and the keys to encrypt for."""

    endpoint: str
    p256dh: bytes
    auth: bytes = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "keys": {"p256dh": b64url_encode(self.p256dh), "auth": b64url_encode(self.auth)},
        }


def validate_endpoint(endpoint: Any, *, allowlisted: AllowList = _nothing_allowed) -> str:
    """Syntactic checks on a push endpoint; where it resolves to is the outbound module's job."""
    if not isinstance(endpoint, str) or not endpoint:
        raise InvalidSubscription("subscription.endpoint must be a URL.")
    if len(endpoint) > MAX_ENDPOINT_LENGTH:
        raise InvalidSubscription(f"subscription.endpoint is longer than {MAX_ENDPOINT_LENGTH} characters.")
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError as exc:
        raise InvalidSubscription("subscription.endpoint is not a valid URL.") from exc
    host = parts.hostname
    if parts.scheme not in {"https", "http"} or not host:
        raise InvalidSubscription("subscription.endpoint must be an https URL.")
    if parts.username is not None or parts.password is not None:
        raise InvalidSubscription("subscription.endpoint must not carry credentials.")
    if parts.fragment:
        raise InvalidSubscription("subscription.endpoint must not have a fragment.")
    # Plain http only for operators' own test push services, named in OUTBOUND_ALLOWLIST.
    if parts.scheme == "http" and not allowlisted(host, port or 80):
        raise InvalidSubscription(
            "subscription.endpoint must be an https URL (plain http only for hosts in OUTBOUND_ALLOWLIST)."
        )
    return endpoint


def _key_bytes(value: Any, name: str) -> bytes:
    """One of the subscription's keys, base64url-decoded."""
    try:
        return b64url_decode(value)
    except ValueError as exc:
        raise InvalidSubscription(f"subscription.keys.{name} must be base64url.") from exc


def parse_p256dh(value: Any) -> bytes:
    """Decode a p256dh key and check it is a point on P-256 (uncompressed, 65 bytes)."""
    raw = _key_bytes(value, "p256dh")
    if len(raw) != 65 or raw[0] != 0x04:
        raise InvalidSubscription("subscription.keys.p256dh must be an uncompressed P-256 point (65 bytes).")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError as exc:
        raise InvalidSubscription("subscription.keys.p256dh is not a point on P-256.") from exc
    return raw


def parse_auth(value: Any) -> bytes:
    raw = _key_bytes(value, "auth")
    if len(raw) != 16:
        raise InvalidSubscription("subscription.keys.auth must be exactly 16 bytes.")
    return raw


def parse_subscription(data: Mapping[str, Any], *, allowlisted: AllowList = _nothing_allowed) -> Subscription:
    """Validate a PushSubscription JSON ({endpoint, keys: {p256dh, auth}})."""
    if not isinstance(data, Mapping):
        raise InvalidSubscription("subscription must be an object.")
    endpoint = validate_endpoint(data.get("endpoint"), allowlisted=allowlisted)
    keys = data.get("keys")
    if not isinstance(keys, Mapping):
        raise InvalidSubscription("subscription.keys must hold p256dh and auth.")
    return Subscription(
        endpoint=endpoint,
        p256dh=parse_p256dh(keys.get("p256dh")),
        auth=parse_auth(keys.get("auth")),
    )


def check_payload_size(plaintext: bytes) -> None:
    """Refuse up front what would not fit one message; never truncate silently."""
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise PayloadTooLarge(
            f"The Web Push payload is {len(plaintext)} bytes; at most {MAX_PLAINTEXT_BYTES} "
            f"bytes fit a {MAX_ENCRYPTED_BYTES}-byte encrypted message."
        )


def encrypt_payload(plaintext: bytes, subscription: Subscription) -> bytes:
    """RFC 8291 aes128gcm with a fresh sender key pair and salt per message."""
    check_payload_size(plaintext)
    if not plaintext:
        # http_ece would emit no record at all for an empty body; a push with no body needs none.
        return b""
    sender_key = ec.generate_private_key(ec.SECP256R1())
    body: bytes = http_ece.encrypt(
        plaintext,
        salt=os.urandom(16),
        private_key=sender_key,
        dh=subscription.p256dh,
        auth_secret=subscription.auth,
        rs=RECORD_SIZE,
        version="aes128gcm",
    )
    return body


def topic_for(*parts: str) -> str:
    """A Topic (RFC 8030 5.4) from the notification: at most 32 base64url characters.

    A hash of what makes two notifications the same, so a repeat replaces the
    undelivered copy on the push service rather than stacking beside it.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return b64url_encode(digest)[:MAX_TOPIC_LENGTH]


def validate_topic(topic: str) -> str:
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    if not topic or len(topic) > MAX_TOPIC_LENGTH or not set(topic) <= allowed:
        raise ValueError("a Topic is 1 to 32 characters of the base64url alphabet")
    return topic


def validate_subject(subject: str) -> str:
    """RFC 8292 section 2.1: sub is a mailto: or https: URI the push service can reach us by."""
    if subject.startswith("mailto:") and "@" in subject:
        return subject
    if subject.startswith("https://") and urlsplit(subject).hostname:
        return subject
    raise ValueError("VAPID_SUBJECT must be a mailto: address or an https: URL")


class VapidKey:
    """The application server's P-256 key pair and the JWTs it signs per push-service origin."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise InvalidVapidKey("the VAPID key must be on P-256")
        self._private_key = private_key
        self._public_raw = private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self._tokens: dict[tuple[str, str], tuple[str, int]] = {}
        self._lock = threading.Lock()

    @classmethod
    def generate(cls) -> VapidKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_config(cls, value: str) -> VapidKey:
        """Read a base64url raw 32-byte scalar, a PEM, or base64url DER (as py-vapid writes)."""
        text = value.strip()
        try:
            if text.startswith("-----BEGIN"):
                key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
            else:
                raw = b64url_decode(text)
                if len(raw) == 32:
                    key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
                else:
                    key = serialization.load_der_private_key(raw, password=None)
        except (ValueError, TypeError) as exc:
            # Never echo the value: it is a secret.
            raise InvalidVapidKey(
                "VAPID_PRIVATE_KEY is not a P-256 private key (base64url raw 32 bytes or PEM)."
            ) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise InvalidVapidKey("VAPID_PRIVATE_KEY is not an EC private key.")
        return cls(key)

    @property
    def public_key_b64(self) -> str:
        """The applicationServerKey: the uncompressed point, base64url."""
        return b64url_encode(self._public_raw)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._private_key.public_key()

    def private_raw_b64(self) -> str:
        scalar = self._private_key.private_numbers().private_value
        return b64url_encode(scalar.to_bytes(32, "big"))

    def token(self, endpoint: str, subject: str, *, now: float | None = None) -> str:
        """An ES256 JWT for the endpoint's origin, reused until an hour before it expires."""
        aud = origin_of(endpoint)
        current = int(time.time() if now is None else now)
        with self._lock:
            cached = self._tokens.get((aud, subject))
            if cached is not None and cached[1] - current > _VAPID_RENEW_BEFORE_SECONDS:
                return cached[0]
            exp = current + VAPID_TOKEN_SECONDS
            # A fresh dict each time: claims are never shared or mutated after signing.
            claims = {"aud": aud, "exp": exp, "sub": subject}
            signed = jwt.encode(claims, self._private_key, algorithm="ES256", headers={"typ": "JWT"})
            if len(self._tokens) > 1024:
                self._tokens.clear()
            self._tokens[(aud, subject)] = (signed, exp)
            return signed

    def authorization(self, endpoint: str, subject: str, *, now: float | None = None) -> str:
        """RFC 8292 section 3: `vapid t=<jwt>, k=<public key>`."""
        return f"vapid t={self.token(endpoint, subject, now=now)}, k={self.public_key_b64}"


@dataclass(frozen=True, slots=True)
class PushRequest:
    """One HTTP request to a push service, ready to send."""

    url: str
    headers: dict[str, str]
    body: bytes = field(repr=False)


def build_request(
    subscription: Subscription,
    plaintext: bytes,
    *,
    vapid: VapidKey,
    subject: str,
    ttl: int,
    urgency: str = "normal",
    topic: str | None = None,
    now: float | None = None,
) -> PushRequest:
    """Encrypt the payload and set the RFC 8030/8291/8292 headers."""
    if not 0 <= ttl <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl must be between 0 and {MAX_TTL_SECONDS} seconds")
    if urgency not in URGENCIES:
        raise ValueError(f"urgency must be one of {sorted(URGENCIES)}")
    body = encrypt_payload(plaintext, subscription)
    headers = {
        "TTL": str(int(ttl)),
        "Urgency": urgency,
        "Authorization": vapid.authorization(subscription.endpoint, subject, now=now),
    }
    if body:
        headers["Content-Encoding"] = "aes128gcm"
        headers["Content-Type"] = "application/octet-stream"
    if topic is not None:
        headers["Topic"] = validate_topic(topic)
    return PushRequest(url=subscription.endpoint, headers=headers, body=body)


async def load_vapid_key(
    redis: Redis,
    configured: str | None,
    *,
    server_secret: str,
    key: str = VAPID_REDIS_KEY,
    warn: Callable[[str], None] | None = None,
) -> VapidKey:
    """VAPID_PRIVATE_KEY when set; otherwise one pair shared by every replica through Redis.

    SET NX makes the first replica's key the only one: subscriptions made against
    one applicationServerKey stop working if another key signs their pushes. The key is
    stored sealed with the server secret and bound to its Redis key name.
    """
    if configured:
        return VapidKey.from_config(configured)
    sealer = Sealer(server_secret, VAPID_KEY_PURPOSE)
    candidate = VapidKey.generate()
    await redis.set(key, sealer.seal(candidate.private_raw_b64(), associated_data=key), nx=True)
    stored = await redis.get(key)
    if stored is None:
        raise RuntimeError("the VAPID key vanished from Redis right after it was stored")
    try:
        text = sealer.unseal_text(stored, associated_data=key)
    except SealError:
        raise InvalidVapidKey(
            f"the VAPID key in Redis ({key}) does not unseal: SECRET_KEY differs from the one that "
            "sealed it, or it was stored unsealed. Set VAPID_PRIVATE_KEY, or delete the key "
            "(browsers must then resubscribe)."
        ) from None
    (warn or log.warning)(
        "VAPID_PRIVATE_KEY is not set: using a generated key pair kept in Redis. "
        "Set VAPID_PRIVATE_KEY in production, or browsers must resubscribe when Redis is lost."
    )
    return VapidKey.from_config(text)
