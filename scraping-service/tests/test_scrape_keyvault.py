from __future__ import annotations

import logging

import pytest
from redis.asyncio import Redis

from scraping_service.keyvault import (
    KEY_PREFIX,
    KeyVault,
    KeyVaultError,
    ScrubFilter,
    forget_secret,
    remember_secret,
    scrub,
)

SECRET = "server-secret-for-tests-0123456789"
KEY = "sk-proj-UserKey_9f8e7d6c5b4a39281706abcdef"


async def test_round_trip_and_nothing_readable_in_redis(redis: Redis) -> None:
    vault = KeyVault(redis, SECRET, ttl_seconds=60)
    ref = await vault.put(KEY)
    assert KEY not in ref and KeyVault.is_ref(ref)
    stored = await redis.get(KEY_PREFIX + ref)
    assert stored is not None
    assert KEY.encode() not in stored and b"UserKey" not in stored
    assert 0 < await redis.ttl(KEY_PREFIX + ref) <= 60
    assert await vault.get(ref) == KEY
    await vault.delete(ref)
    with pytest.raises(KeyVaultError, match="expired or was already used"):
        await vault.get(ref)


async def test_another_server_secret_cannot_decrypt(redis: Redis) -> None:
    ref = await KeyVault(redis, SECRET).put(KEY)
    with pytest.raises(KeyVaultError, match="could not be decrypted"):
        await KeyVault(redis, "another-server-secret-987654321").get(ref)
    await redis.delete(KEY_PREFIX + ref)


async def test_ciphertext_is_bound_to_its_reference(redis: Redis) -> None:
    vault = KeyVault(redis, SECRET)
    ref_a = await vault.put(KEY)
    ref_b = await vault.put("sk-other-key-000000000000")
    await redis.set(KEY_PREFIX + ref_b, await redis.get(KEY_PREFIX + ref_a))  # type: ignore[arg-type]
    with pytest.raises(KeyVaultError):
        await vault.get(ref_b)
    await redis.delete(KEY_PREFIX + ref_a, KEY_PREFIX + ref_b)


async def test_malformed_references_are_refused(redis: Redis) -> None:
    vault = KeyVault(redis, SECRET)
    for ref in ["", "abc", "kref_../../etc", "scrape:keyref:x", KEY]:
        with pytest.raises(KeyVaultError):
            await vault.get(ref)


def test_weak_server_secret_is_refused(redis: Redis) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        KeyVault(redis, "short")


def test_scrub_removes_known_and_keylike_secrets() -> None:
    assert scrub(f"bad key {KEY}!", [KEY]) == "bad key ***!"
    assert KEY not in scrub(f"bad key {KEY}")  # looks like a key even when not registered
    assert "abcdef0123456789" not in scrub("Authorization: Bearer abcdef0123456789xyz")
    assert scrub("nothing secret here") == "nothing secret here"


def test_scrub_filter_cleans_log_records(caplog: pytest.LogCaptureFixture) -> None:
    secret = "plain-secret-without-prefix-42"
    remember_secret(secret)
    logger = logging.getLogger("scrape.test.scrub")
    logger.addFilter(ScrubFilter())
    try:
        with caplog.at_level(logging.INFO, logger="scrape.test.scrub"):
            logger.info("calling with %s", secret)
            try:
                raise RuntimeError(f"failed for {secret}")
            except RuntimeError:
                logger.exception("boom")
        assert secret not in caplog.text
        assert "calling with ***" in caplog.text
    finally:
        forget_secret(secret)
        logger.filters.clear()
