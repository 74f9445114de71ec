"""Standard Webhooks signing, checked against the spec's vector and a local receiver."""

from __future__ import annotations

import base64
import time

import aiohttp
import pytest
import redis.asyncio as aioredis
from notify_fakes import FakeWebhookReceiver, Scripted

from notification_service.devices import Devices, DeviceSecretError, device_key, user_devices_key
from shared import webhooks
from shared.webhooks import WebhookVerificationError

# The example from the Standard Webhooks reference libraries' tests.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_spec_vector() -> None:
    assert webhooks.sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TS),
        "webhook-signature": SPEC_SIGNATURE,
    }
    webhooks.verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TS + 10)


def test_generated_secret_shape() -> None:
    secret = webhooks.generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secret != webhooks.generate_secret()


def test_verify_refuses_tampering_and_staleness() -> None:
    secret = webhooks.generate_secret()
    body = b'{"a": 1}'
    headers = webhooks.signed_headers(secret, "msg_1", body)
    webhooks.verify(secret, headers, body)
    # Header names are case-insensitive on the wire.
    webhooks.verify(secret, {k.title(): v for k, v in headers.items()}, body)
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(secret, headers, b'{"a": 2}')
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(webhooks.generate_secret(), headers, body)
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(secret, {**headers, "webhook-id": "msg_2"}, body)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        webhooks.verify(secret, headers, body, now=time.time() + 301)
    with pytest.raises(WebhookVerificationError, match="missing"):
        webhooks.verify(secret, {"webhook-id": "msg_1"}, body)
    with pytest.raises(WebhookVerificationError, match="integer"):
        webhooks.verify(secret, {**headers, "webhook-timestamp": "soon"}, body)


def test_verify_accepts_any_of_several_signatures() -> None:
    old, new = webhooks.generate_secret(), webhooks.generate_secret()
    body = b"{}"
    ts = int(time.time())
    both = f"{webhooks.sign(old, 'msg_x', ts, body)} {webhooks.sign(new, 'msg_x', ts, body)}"
    headers = {"webhook-id": "msg_x", "webhook-timestamp": str(ts), "webhook-signature": both}
    webhooks.verify(old, headers, body)
    webhooks.verify(new, headers, body)
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(webhooks.generate_secret(), headers, body)


def test_bad_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        webhooks.secret_key("whsec_***")
    with pytest.raises(ValueError):
        webhooks.secret_key("whsec_" + base64.b64encode(b"short").decode())


async def test_local_receiver_verifies(webhook_receiver: FakeWebhookReceiver) -> None:
    secret = webhooks.generate_secret()
    hook = webhook_receiver.new_hook(secret)
    body = b'{"event": "notification"}'
    async with aiohttp.ClientSession() as session:
        good = webhooks.signed_headers(secret, "msg_ok", body)
        async with session.post(hook.url, data=body, headers=good) as response:
            assert response.status == 204
        bad = webhooks.signed_headers(webhooks.generate_secret(), "msg_bad", body)
        async with session.post(hook.url, data=body, headers=bad) as response:
            assert response.status == 401
        webhook_receiver.script(hook, Scripted(410))
        again = webhooks.signed_headers(secret, "msg_gone", body)
        async with session.post(hook.url, data=body, headers=again) as response:
            assert response.status == 410
    assert hook.received == [body]
    assert hook.ids == ["msg_ok"]
    assert webhook_receiver.rejections == ["no matching v1 signature"]


async def test_device_secret_is_sealed_and_bound_to_its_device(notify_redis_url: str) -> None:
    client = aioredis.Redis.from_url(notify_redis_url)
    devices = Devices(client, 50, "server-secret-for-tests-0123456789")
    owner = f"sealing-{time.time_ns()}"
    secret, other_secret = webhooks.generate_secret(), webhooks.generate_secret()
    try:
        device, _ = await devices.add_webhook(owner, "https://hooks.example.com/a", secret, None)
        other, _ = await devices.add_webhook(owner, "https://hooks.example.com/b", other_secret, None)
        stored = await client.hget(device_key(device.device_id), "secret")
        assert (
            stored and secret.encode() not in stored and secret.removeprefix("whsec_").encode() not in stored
        )
        fetched = await devices.get(device.device_id)
        assert fetched is not None and devices.signing_secret(fetched) == secret

        # Unsealing fails loudly instead of signing with garbage: another server secret,
        # a sealed secret copied onto another device, or a secret stored in plaintext.
        with pytest.raises(DeviceSecretError, match="does not unseal"):
            Devices(client, 50, "another-server-secret-987654321").signing_secret(fetched)
        await client.hset(device_key(other.device_id), "secret", stored)
        moved = await devices.get(other.device_id)
        assert moved is not None
        with pytest.raises(DeviceSecretError, match="does not unseal"):
            devices.signing_secret(moved)
        await client.hset(device_key(other.device_id), "secret", other_secret)
        plain = await devices.get(other.device_id)
        assert plain is not None
        with pytest.raises(DeviceSecretError) as caught:
            devices.signing_secret(plain)
        assert other_secret not in str(caught.value)
    finally:
        ids = [d.device_id for d in await devices.list_for(owner)]
        await client.delete(user_devices_key(owner), *(device_key(i) for i in ids))
        await client.aclose()
