"""Keep a user's OpenAI key out of the broker, the result store, logs, events and Flower.

The API encrypts the key with AES-256-GCM under a key derived (HKDF-SHA256) from a server
secret that only the API and the workers hold, stores the ciphertext in Redis under a random
reference with a short TTL, and publishes only the reference. The worker reads and decrypts it
when it needs it and deletes it once the task has finished. Redis never sees the plaintext and
the broker never sees even the ciphertext; a reference that leaks is useless after its TTL or
after the task, and useless without the server secret before.

`scrub()` and `ScrubFilter` are the last line: any text that could reach a log, an exception or
a result is passed through them with the secrets currently in use.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
import threading
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from redis.asyncio import Redis

__all__ = [
    "KeyVault",
    "KeyVaultError",
    "ScrubFilter",
    "forget_secret",
    "remember_secret",
    "scrub",
]

KEY_PREFIX = "scrape:keyref:"
REF_PREFIX = "kref_"
_REF_RE = re.compile(r"^kref_[A-Za-z0-9_-]{32,64}$")
_HKDF_INFO = b"smart_application/scraping/openai-key/v1"

# Things that look like API keys or bearer tokens, scrubbed even when we were not told about them.
_KEYLIKE_RE = re.compile(r"(sk-[A-Za-z0-9_\-*]{6,}|Bearer\s+[A-Za-z0-9._~+/=\-]{8,})")

_active: set[str] = set()
_active_lock = threading.Lock()


class KeyVaultError(Exception):
    """A key reference that is unknown, expired, or does not decrypt."""


def remember_secret(value: str) -> None:
    """Register a secret so that ScrubFilter removes it from every log record."""
    if len(value) >= 4:
        with _active_lock:
            _active.add(value)


def forget_secret(value: str) -> None:
    with _active_lock:
        _active.discard(value)


def scrub(text: str, extra: Iterable[str] = ()) -> str:
    """Remove known secrets and key-like strings from text."""
    with _active_lock:
        known = set(_active)
    for value in sorted({*known, *(e for e in extra if e and len(e) >= 4)}, key=len, reverse=True):
        text = text.replace(value, "***")
    return _KEYLIKE_RE.sub(lambda m: m.group(0)[:3] + "***", text)


class ScrubFilter(logging.Filter):
    """A logging filter that rewrites each record with secrets removed."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not drop the record silently
            message = str(record.msg)
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            cleaned_exc = scrub(text)
            if cleaned_exc != text:
                record.exc_info, record.exc_text = None, cleaned_exc
        return True


def derive_key(server_secret: str) -> bytes:
    if len(server_secret) < 16:
        raise ValueError("the key-encryption secret must be at least 16 characters")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
    return hkdf.derive(server_secret.encode("utf-8"))


class KeyVault:
    def __init__(self, redis: Redis, server_secret: str, ttl_seconds: int = 3600) -> None:
        self._redis = redis
        self._aead = AESGCM(derive_key(server_secret))
        self.ttl_seconds = ttl_seconds

    @staticmethod
    def is_ref(value: str) -> bool:
        return bool(_REF_RE.match(value))

    def _seal(self, ref: str, plaintext: str) -> str:
        nonce = secrets.token_bytes(12)
        # The reference is bound as associated data: a ciphertext copied under another
        # reference does not decrypt. Stored as base64 text so that clients made with
        # decode_responses=True read it back unharmed.
        sealed = nonce + self._aead.encrypt(nonce, plaintext.encode("utf-8"), ref.encode())
        return base64.urlsafe_b64encode(sealed).decode("ascii")

    def _open(self, ref: str, stored: bytes | str) -> str:
        try:
            blob = base64.urlsafe_b64decode(stored)
            return self._aead.decrypt(blob[:12], blob[12:], ref.encode()).decode("utf-8")
        except (InvalidTag, ValueError, UnicodeDecodeError):
            raise KeyVaultError("The stored OpenAI key could not be decrypted.") from None

    async def put(self, plaintext: str) -> str:
        """Store the key encrypted; return the reference to publish instead of it."""
        ref = REF_PREFIX + secrets.token_urlsafe(32)
        await self._redis.set(KEY_PREFIX + ref, self._seal(ref, plaintext), ex=self.ttl_seconds)
        return ref

    async def get(self, ref: str) -> str:
        if not self.is_ref(ref):
            raise KeyVaultError("The OpenAI key reference is malformed.")
        blob = await self._redis.get(KEY_PREFIX + ref)
        if blob is None:
            raise KeyVaultError(
                "The OpenAI key for this task has expired or was already used; submit it again."
            )
        return self._open(ref, blob)

    async def extend(self, ref: str, seconds: int) -> None:
        if self.is_ref(ref):
            await self._redis.expire(KEY_PREFIX + ref, seconds)

    async def delete(self, ref: str) -> None:
        if self.is_ref(ref):
            await self._redis.delete(KEY_PREFIX + ref)
