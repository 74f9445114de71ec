"""Sealing secrets at rest (in Redis) with the server secret, SECRET_KEY.

AES-256-GCM under a key derived with HKDF-SHA256 from the server secret, one key per
purpose: a value sealed for one purpose never opens under another. Each seal draws a
random 96-bit nonce; the result is base64url text of nonce + ciphertext + tag, so Redis
clients made with decode_responses=True read it back unharmed. Optional associated data
binds a sealed value to where it is stored (a key name, a record id): copied elsewhere,
it does not open.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

if TYPE_CHECKING:
    pass

__all__ = ["SealError", "Sealer", "derive_sealing_key"]

_NONCE_BYTES = 12
_TAG_BYTES = 16
MIN_SECRET_CHARS = 16


class SealError(ValueError):
    """A sealed value that does not open: tampered with, sealed under another server secret
    or purpose, bound to other associated data, or never sealed at all (plaintext)."""


def derive_sealing_key(server_secret: str, purpose: str) -> bytes:
    """The 32-byte AES key for one purpose; the purpose string is the HKDF info."""
    if len(server_secret) < MIN_SECRET_CHARS:
        raise ValueError(f"the key-encryption secret must be at least {MIN_SECRET_CHARS} characters")
    if not purpose:
        raise ValueError("a sealing purpose is required")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode("utf-8"))
    return hkdf.derive(server_secret.encode("utf-8"))


class Sealer:
    """Seals and unseals values for one purpose under the server secret."""

    def __init__(self, server_secret: str, purpose: str) -> None:
        self.purpose = purpose
        self._aead = AESGCM(derive_sealing_key(server_secret, purpose))

    def __repr__(self) -> str:
        return f"Sealer(purpose={self.purpose!r})"

    def seal(self, plaintext: bytes | str, associated_data: bytes | str = b"") -> str:
        data = plaintext.encode("utf-8") if isinstance(plaintext, str) else plaintext
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, data, _bytes(associated_data))
        return base64.urlsafe_b64encode(sealed).decode("ascii")

    def unseal(self, sealed: bytes | str, associated_data: bytes | str = b"") -> bytes:
        """The plaintext, or SealError; never a partial or unauthenticated result."""
        try:
            blob = base64.urlsafe_b64decode(_bytes(sealed))
        except (binascii.Error, ValueError):
            raise SealError(f"a sealed {self.purpose} value is not valid base64url") from None
        if len(blob) < _NONCE_BYTES + _TAG_BYTES:
            raise SealError(f"a sealed {self.purpose} value is too short")
        try:
            return self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _bytes(associated_data))
        except InvalidTag:
            # Never include the value: it may be a plaintext secret stored before sealing.
            raise SealError(
                f"a sealed {self.purpose} value failed authentication "
                "(tampered, another SECRET_KEY, or never sealed)"
            ) from None

    def unseal_text(self, sealed: bytes | str, associated_data: bytes | str = b"") -> str:
        try:
            return self.unseal(sealed, associated_data).decode("utf-8")
        except UnicodeDecodeError:
            raise SealError(f"a sealed {self.purpose} value is not UTF-8 text") from None


def _bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value
