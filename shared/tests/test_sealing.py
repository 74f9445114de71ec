"""shared.Sealer: secrets at rest sealed with the server secret, one key per purpose."""

from __future__ import annotations

import base64

import pytest

from shared import BaseServiceSettings, Sealer, SealError
from shared._sealing import derive_sealing_key

SECRET = "server-secret-for-tests-0123456789"
PLAINTEXT = b"whsec_c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1ub3QtbGVhaw=="


def test_round_trip_with_random_nonces() -> None:
    sealer = Sealer(SECRET, "tests/round-trip/v1")
    first, second = sealer.seal(PLAINTEXT), sealer.seal(PLAINTEXT)
    assert first != second  # a fresh nonce each time
    for sealed in (first, second):
        assert PLAINTEXT not in sealed.encode() and b"whsec_" not in base64.urlsafe_b64decode(sealed)
        assert sealer.unseal(sealed) == PLAINTEXT
        assert sealer.unseal(sealed.encode()) == PLAINTEXT  # as a bytes-mode Redis client reads it
    assert sealer.unseal_text(sealer.seal("héllo")) == "héllo"
    assert sealer.unseal(sealer.seal(b"")) == b""


def test_tampering_is_detected() -> None:
    sealer = Sealer(SECRET, "tests/tamper/v1")
    blob = bytearray(base64.urlsafe_b64decode(sealer.seal(PLAINTEXT)))
    for i in (0, 12, len(blob) - 1):  # the nonce, the ciphertext, the tag
        changed = bytearray(blob)
        changed[i] ^= 0x01
        with pytest.raises(SealError, match="failed authentication"):
            sealer.unseal(base64.urlsafe_b64encode(bytes(changed)))
    with pytest.raises(SealError, match="too short"):
        sealer.unseal(base64.urlsafe_b64encode(bytes(blob[:20])))
    # A value stored before sealing existed does not pass for a sealed one, nor leak into the error.
    with pytest.raises(SealError) as caught:
        sealer.unseal(PLAINTEXT)
    assert PLAINTEXT.decode() not in str(caught.value)


def test_purposes_secrets_and_associated_data_keep_values_apart() -> None:
    webhook, vapid = Sealer(SECRET, "tests/webhook/v1"), Sealer(SECRET, "tests/vapid/v1")
    sealed = webhook.seal(PLAINTEXT)
    with pytest.raises(SealError):
        vapid.unseal(sealed)
    with pytest.raises(SealError):
        Sealer("another-server-secret-987654321", "tests/webhook/v1").unseal(sealed)
    bound = webhook.seal(PLAINTEXT, associated_data="device-a")
    assert webhook.unseal(bound, associated_data="device-a") == PLAINTEXT
    with pytest.raises(SealError):
        webhook.unseal(bound, associated_data="device-b")
    with pytest.raises(SealError):
        webhook.unseal(bound)
    assert derive_sealing_key(SECRET, "a") != derive_sealing_key(SECRET, "b")


def test_key_comes_from_settings_secret_key_and_weak_secrets_are_refused() -> None:
    settings = BaseServiceSettings(secret_key=SECRET)
    sealed = Sealer(settings.secret_key, "tests/settings/v1").seal(PLAINTEXT)
    assert Sealer(SECRET, "tests/settings/v1").unseal(sealed) == PLAINTEXT
    assert SECRET not in repr(Sealer(SECRET, "tests/settings/v1"))
    with pytest.raises(ValueError, match="at least 16"):
        Sealer("short", "tests/v1")
    with pytest.raises(ValueError, match="purpose"):
        Sealer(SECRET, "")
