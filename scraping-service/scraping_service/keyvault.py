"""Keep a user's OpenAI key out of the broker, the result store, logs, events and Flower.

The API seals the key (shared.Sealer: AES-256-GCM under a key derived with HKDF-SHA256 from a
server secret that only the API and the workers hold), stores the ciphertext in Redis under a random
reference with a short TTL, and publishes only the reference. The worker reads and decrypts it
when it needs it and deletes it once the task has finished. Redis never sees the plaintext and
the broker never sees even the ciphertext; a reference that leaks is useless after its TTL or
after the task, and useless without the server secret before.

`scrub()` and `ScrubFilter` are the last line: any text that could reach a log, an exception or
a result is passed through them with the secrets currently in use.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import Iterable

from redis.asyncio import Redis

from shared import Sealer, SealError

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
# The HKDF info of the key that seals these keys (shared.Sealer); changing it orphans stored keys.
_PURPOSE = "smart_application/scraping/openai-key/v1"

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


class KeyVault:
    def __init__(
        self, redis: Redis, server_secret: str, ttl_seconds: int = 3600, *, purpose: str = _PURPOSE
    ) -> None:
        # A vault per kind of secret (purpose): one kind's ciphertext never opens as another's.
        self._redis = redis
        self._sealer = Sealer(server_secret, purpose)
        self.ttl_seconds = ttl_seconds

    @staticmethod
    def is_ref(value: str) -> bool:
        return bool(_REF_RE.match(value))

    def _seal(self, ref: str, plaintext: str) -> str:
        # The reference is bound as associated data: a ciphertext copied under another
        # reference does not decrypt.
        return self._sealer.seal(plaintext, associated_data=ref)

    def _open(self, ref: str, stored: bytes | str) -> str:
        try:
            return self._sealer.unseal_text(stored, associated_data=ref)
        except SealError:
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
