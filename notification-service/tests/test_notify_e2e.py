"""End to end: the real API and a real Celery worker, a local push service and webhook receiver.

The test plays the browser (its own P-256 keys and auth secret) and the webhook owner.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from notify_fakes import FakePushService, FakeWebhookReceiver, Hook, Scripted

Auth = Callable[..., dict[str, str]]


def _user() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


async def _eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 20.0, interval: float = 0.1
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s; last: {last!r}")


async def _status(api: httpx.AsyncClient, headers: dict[str, str], nid: str) -> dict[str, Any]:
    r = await api.get(f"/notification-status/{nid}", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _settled(
    api: httpx.AsyncClient, headers: dict[str, str], nid: str, timeout: float = 20.0
) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = await _status(api, headers, nid)
        return body if body["status"] not in ("queued", "sending") else None

    result: dict[str, Any] = await _eventually(done, timeout)
    return result


async def _register_browser(
    api: httpx.AsyncClient, headers: dict[str, str], push: FakePushService
) -> tuple[Any, str]:
    r = await api.get("/webpush/vapid-public-key")
    push.expected_public_key = r.json()["public_key"]
    browser = push.new_browser()
    r = await api.post(
        "/devices/",
        headers=headers,
        json={"channel": "webpush", "subscription": browser.subscription()},
    )
    assert r.status_code == 201, r.text
    return browser, r.json()["device_id"]


async def _register_hook(
    api: httpx.AsyncClient, headers: dict[str, str], receiver: FakeWebhookReceiver
) -> tuple[Hook, str]:
    hook = receiver.new_hook()
    r = await api.post("/devices/", headers=headers, json={"channel": "webhook", "url": hook.url})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["secret"].startswith("whsec_")
    hook.secret = body["secret"]
    return hook, body["device_id"]


async def _send(api: httpx.AsyncClient, headers: dict[str, str], user: str, **extra: Any) -> dict[str, Any]:
    payload = {"user_id": user, "title": "Hello", "message": "World", "data": {"k": 1}, **extra}
    r = await api.post("/send-notification/", headers=headers, json=payload)
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_vapid_key_is_a_p256_point(api: httpx.AsyncClient) -> None:
    for path in ("/webpush/vapid-public-key", "/webpush/vapid-public-key/"):
        r = await api.get(path)
        assert r.status_code == 200
        raw = base64.urlsafe_b64decode(r.json()["public_key"] + "==")
        assert len(raw) == 65 and raw[0] == 4


async def test_webpush_delivery_is_decrypted_by_the_browser(
    api: httpx.AsyncClient, auth: Auth, push_service: FakePushService
) -> None:
    user = _user()
    headers = auth(user, "")
    browser, device_id = await _register_browser(api, headers, push_service)
    sent = await _send(api, headers, user, ttl=600, urgency="high")
    status = await _settled(api, headers, sent["notification_id"])
    assert status["status"] == "delivered", status
    (delivery,) = status["deliveries"]
    assert delivery["device_id"] == device_id
    assert delivery["attempts"] == 1 and delivery["history"][0]["http_status"] == 201
    assert push_service.rejections == []
    (plaintext,) = browser.received
    payload = json.loads(plaintext)
    assert payload["notification_id"] == sent["notification_id"]
    assert (payload["title"], payload["message"], payload["data"]) == ("Hello", "World", {"k": 1})
    assert browser.urgencies == ["high"]
    assert 590 <= browser.ttls[0] <= 600
    assert browser.topics[0] is not None and len(browser.topics[0]) <= 32


async def test_webhook_delivery_is_signed(
    api: httpx.AsyncClient, auth: Auth, webhook_receiver: FakeWebhookReceiver
) -> None:
    user = _user()
    headers = auth(user, "")
    hook, _ = await _register_hook(api, headers, webhook_receiver)
    r = await api.get("/devices", headers=headers)
    (listed,) = r.json()["devices"]
    assert listed["url"] == hook.url and "secret" not in json.dumps(listed).replace('"secret": null', "")
    sent = await _send(api, headers, user)
    status = await _settled(api, headers, sent["notification_id"])
    assert status["status"] == "delivered", status
    assert webhook_receiver.rejections == []
    (body,) = hook.received
    event = json.loads(body)
    assert event["type"] == "notification.created"
    assert event["data"]["notification_id"] == sent["notification_id"]


async def _redis_values(url: str) -> list[bytes]:
    """Every value in the session's Redis database, whatever the type of its key."""
    client = aioredis.Redis.from_url(url)
    values: list[bytes] = []
    try:
        async for key in client.scan_iter(count=1000):
            kind = (await client.type(key)).decode()
            if kind == "string":
                values.append(await client.get(key) or b"")
            elif kind == "hash":
                values.extend(v for kv in (await client.hgetall(key)).items() for v in kv)
            elif kind == "list":
                values.extend(await client.lrange(key, 0, -1))
            elif kind == "set":
                values.extend(await client.smembers(key))
            elif kind == "zset":
                values.extend(await client.zrange(key, 0, -1))
            elif kind == "stream":
                for _, fields in await client.xrange(key):
                    values.extend(v for kv in fields.items() for v in kv)
    finally:
        await client.aclose()
    return values


async def test_webhook_secret_is_sealed_at_rest(
    api: httpx.AsyncClient, auth: Auth, webhook_receiver: FakeWebhookReceiver, notify_redis_url: str
) -> None:
    user = _user()
    headers = auth(user, "")
    hook, device_id = await _register_hook(api, headers, webhook_receiver)
    values = await _redis_values(notify_redis_url)
    assert any(device_id.encode() in v for v in values)  # the scan does see the device
    secret_text = hook.secret.encode()
    assert not [v for v in values if secret_text in v or secret_text.removeprefix(b"whsec_") in v]
    # Unsealed when it is needed: the receiver verifies the signature with the secret it was given.
    sent = await _send(api, headers, user)
    status = await _settled(api, headers, sent["notification_id"])
    assert status["status"] == "delivered", status
    assert webhook_receiver.rejections == [] and len(hook.received) == 1


@pytest.mark.parametrize("code", [404, 410])
async def test_gone_subscription_is_pruned(
    api: httpx.AsyncClient, auth: Auth, push_service: FakePushService, code: int
) -> None:
    user = _user()
    headers = auth(user, "")
    browser, device_id = await _register_browser(api, headers, push_service)
    push_service.script(browser, Scripted(code))
    sent = await _send(api, headers, user)
    status = await _settled(api, headers, sent["notification_id"])
    assert status["status"] == "failed"
    assert status["deliveries"][0]["status"] == "gone"
    r = await api.get("/devices/", headers=headers)
    assert device_id not in [d["device_id"] for d in r.json()["devices"]]


async def test_webhook_410_disables_the_device(
    api: httpx.AsyncClient, auth: Auth, webhook_receiver: FakeWebhookReceiver
) -> None:
    user = _user()
    headers = auth(user, "")
    hook, device_id = await _register_hook(api, headers, webhook_receiver)
    webhook_receiver.script(hook, Scripted(410))
    sent = await _send(api, headers, user)
    status = await _settled(api, headers, sent["notification_id"])
    assert status["deliveries"][0]["status"] == "gone"
    (device,) = (await api.get("/devices/", headers=headers)).json()["devices"]
    assert device["device_id"] == device_id and device["status"] == "disabled"


@pytest.mark.parametrize(
    ("answer", "min_seconds"),
    [(Scripted(429, {"Retry-After": "1"}), 1.0), (Scripted(500), 0.0), (Scripted(503), 0.0)],
)
async def test_retryable_answers_are_retried_and_delivered_once(
    api: httpx.AsyncClient,
    auth: Auth,
    push_service: FakePushService,
    answer: Scripted,
    min_seconds: float,
) -> None:
    user = _user()
    headers = auth(user, "")
    browser, _ = await _register_browser(api, headers, push_service)
    push_service.script(browser, answer)
    started = time.monotonic()
    sent = await _send(api, headers, user)
    status = await _settled(api, headers, sent["notification_id"])
    assert status["status"] == "delivered", status
    (delivery,) = status["deliveries"]
    assert [a["http_status"] for a in delivery["history"]] == [answer.status, 201]
    assert delivery["attempts"] == 2
    assert time.monotonic() - started >= min_seconds
    assert len(browser.received) == 1


async def test_403_fails_and_keeps_the_device(
    api: httpx.AsyncClient, auth: Auth, push_service: FakePushService
) -> None:
    user = _user()
    headers = auth(user, "")
    browser, device_id = await _register_browser(api, headers, push_service)
    push_service.script(browser, Scripted(403))
    sent = await _send(api, headers, user)
    status = await _settled(api, headers, sent["notification_id"])
    assert status["status"] == "failed"
    (delivery,) = status["deliveries"]
    assert delivery["status"] == "failed" and delivery["attempts"] == 1
    assert delivery["error"] == "http 403"
    r = await api.get("/devices/", headers=headers)
    assert [d["device_id"] for d in r.json()["devices"]] == [device_id]


async def test_retries_stop_when_the_ttl_has_passed(
    api: httpx.AsyncClient, auth: Auth, push_service: FakePushService
) -> None:
    user = _user()
    headers = auth(user, "")
    browser, _ = await _register_browser(api, headers, push_service)
    push_service.script(browser, *[Scripted(500)] * 50)
    sent = await _send(api, headers, user, ttl=2)
    status = await _settled(api, headers, sent["notification_id"], timeout=15)
    (delivery,) = status["deliveries"]
    assert delivery["status"] == "expired", delivery
    assert delivery["attempts"] >= 2
    assert browser.received == []


async def test_idempotency_key_sends_once(
    api: httpx.AsyncClient, auth: Auth, webhook_receiver: FakeWebhookReceiver
) -> None:
    user = _user()
    headers = auth(user, "")
    hook, _ = await _register_hook(api, headers, webhook_receiver)
    keyed = {**headers, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    body = {"user_id": user, "title": "Once", "message": "only once"}
    answers = [await api.post("/send-notification", headers=keyed, json=body) for _ in range(3)]
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["notification_id"] for a in answers}) == 1
    assert len({a.json()["task_id"] for a in answers}) == 1
    nid = answers[0].json()["notification_id"]
    await _settled(api, headers, nid)
    await asyncio.sleep(0.5)
    assert len(hook.received) == 1
    other = await api.post("/send-notification/", headers=keyed, json={**body, "title": "Twice"})
    assert other.status_code == 409
    inbox = (await api.get("/inbox/", headers=headers)).json()
    assert [i["notification_id"] for i in inbox["items"]] == [nid]


async def test_a_key_left_claimed_by_a_dead_api_is_taken_over_and_the_send_goes_out_once(
    api: httpx.AsyncClient, auth: Auth, webhook_receiver: FakeWebhookReceiver, notify_redis_url: str
) -> None:
    """An API killed between claiming the Idempotency-Key and handing the delivery task off
    leaves a claim naming a task that never exists. The client's repeat, once that claim is
    older than any submission takes, is sent (once) instead of answered with the ghost's ids."""
    user = _user()
    headers = auth(user, "")
    hook, _ = await _register_hook(api, headers, webhook_receiver)
    body = {"user_id": user, "title": "After a crash", "message": "sent once"}
    probe = await api.post("/send-notification/", headers={**headers, "Idempotency-Key": "probe"}, json=body)
    assert probe.status_code == 202
    client = aioredis.Redis.from_url(notify_redis_url)
    try:
        fingerprint = json.loads(await client.get(f"t:idem:notify:{user}:probe"))["fp"]  # this body's
        ghost = {"fp": fingerprint, "id": "ghost-nid ghost-tid", "at": time.time() - 60}
        await client.set(f"t:idem:notify:{user}:crashed", json.dumps(ghost), ex=3600)
    finally:
        await client.aclose()
    keyed = {**headers, "Idempotency-Key": "crashed"}
    answers = [await api.post("/send-notification/", headers=keyed, json=body) for _ in range(2)]
    assert {a.status_code for a in answers} == {202}
    nid = answers[0].json()["notification_id"]
    assert nid != "ghost-nid" and answers[1].json()["notification_id"] == nid
    await _settled(api, headers, nid)
    await _settled(api, headers, probe.json()["notification_id"])
    await asyncio.sleep(0.5)
    assert len(hook.received) == 2  # the probe's and the taken-over key's, nothing more


async def test_sending_to_another_user_needs_scope(api: httpx.AsyncClient, auth: Auth) -> None:
    body = {"user_id": _user(), "title": "Hi"}
    r = await api.post("/send-notification/", headers=auth(_user(), "tasks"), json=body)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "insufficient_scope"
    r = await api.post("/send-notification/", headers=auth(_user(), "notify:send"), json=body)
    assert r.status_code == 202


async def test_validation(api: httpx.AsyncClient, auth: Auth) -> None:
    user = _user()
    headers = auth(user, "")
    # The largest body that fits: the payload JSON reaches exactly 3993 bytes.
    probe = {"user_id": user, "title": "t", "message": ""}
    overhead = len(
        json.dumps(
            {
                "notification_id": str(uuid.uuid4()),
                "title": "t",
                "message": "",
                "data": {},
                "created_at": "2024-01-01T00:00:00.000Z",
            },
            separators=(",", ":"),
        )
    )
    fits = {**probe, "data": {"x": "a" * (3993 - overhead - 6)}}
    r = await api.post("/send-notification/", headers=headers, json=fits)
    assert r.status_code == 202, r.text
    too_big = {**probe, "data": {"x": "a" * (3993 - overhead - 5)}}
    r = await api.post("/send-notification/", headers=headers, json=too_big)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "payload_too_large"
    for bad in (
        {"user_id": user, "title": ""},
        {"user_id": user, "title": "x" * 201},
        {"user_id": "", "title": "x"},
        {"user_id": user, "title": "x", "message": "m" * 2001},
        {"user_id": user, "title": "x", "ttl": -1},
        {"user_id": user, "title": "x", "urgency": "urgent"},
        {"user_id": user, "title": "x", "unknown": 1},
    ):
        r = await api.post("/send-notification/", headers=headers, json=bad)
        assert r.status_code == 422, bad
        assert "error" in r.json()
    r = await api.post("/send-notification/", json=probe)
    assert r.status_code == 401


async def test_device_urls_are_checked(api: httpx.AsyncClient, auth: Auth) -> None:
    headers = auth(_user(), "")
    for url in (
        "http://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/hook",
        "https://[::ffff:192.168.0.1]/hook",
        "ftp://127.0.0.1/x",
        "https://user:pw@127.0.0.1/x",
    ):
        r = await api.post("/devices/", headers=headers, json={"channel": "webhook", "url": url})
        assert r.status_code == 422, url
    sub = {
        "endpoint": "https://10.1.2.3/push/x",
        "keys": {"p256dh": "BAAA", "auth": "AAAAAAAAAAAAAAAAAAAAAA"},
    }
    r = await api.post("/devices/", headers=headers, json={"channel": "webpush", "subscription": sub})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_subscription"
    r = await api.post("/devices/", headers=headers, json={"channel": "webhook"})
    assert r.status_code == 422
    assert (await api.get("/devices/", headers=headers)).json()["count"] == 0


async def test_devices_are_per_user(
    api: httpx.AsyncClient, auth: Auth, webhook_receiver: FakeWebhookReceiver
) -> None:
    alice, bob = auth(_user(), ""), auth(_user(), "")
    _, device_id = await _register_hook(api, alice, webhook_receiver)
    assert (await api.get("/devices/", headers=bob)).json()["count"] == 0
    assert (await api.delete(f"/devices/{device_id}", headers=bob)).status_code == 404
    assert (await api.delete(f"/devices/{device_id}/", headers=alice)).status_code == 204
    assert (await api.get("/devices", headers=alice)).json()["count"] == 0


async def test_status_is_private(api: httpx.AsyncClient, auth: Auth) -> None:
    sender = _user()
    sent = await _send(api, auth(sender, ""), sender)
    r = await api.get(f"/notification-status/{sent['notification_id']}", headers=auth(_user(), ""))
    assert r.status_code == 404
    r = await api.get(f"/notification-status/{uuid.uuid4()}", headers=auth(sender, ""))
    assert r.status_code == 404
    status = await _settled(api, auth(sender, ""), sent["notification_id"])
    assert status["status"] == "inbox_only"


async def test_inbox_paging_read_state_and_stream_resume(api: httpx.AsyncClient, auth: Auth) -> None:
    user = _user()
    headers = auth(user, "")
    nids = [(await _send(api, headers, user, title=f"n{i}"))["notification_id"] for i in range(5)]
    page = (await api.get("/inbox/?limit=2", headers=headers)).json()
    assert [i["title"] for i in page["items"]] == ["n4", "n3"]
    assert page["unread_count"] == 5
    older = (await api.get(f"/inbox?limit=10&before={page['next_before']}", headers=headers)).json()
    assert [i["title"] for i in older["items"]] == ["n2", "n1", "n0"]
    r = await api.post(f"/inbox/{nids[0]}/read", headers=headers)
    assert r.status_code == 200 and r.json()["unread_count"] == 4
    assert (await api.post(f"/inbox/{uuid.uuid4()}/read", headers=headers)).status_code == 404
    unread = (await api.get("/inbox/?unread=true", headers=headers)).json()
    assert nids[0] not in [i["notification_id"] for i in unread["items"]]
    # Another user's inbox is another inbox.
    assert (await api.get("/inbox/", headers=auth(_user(), ""))).json()["items"] == []

    # Resume after the second notification: the stream replays 3, 4, 5 and then a new one.
    seq_of = {i["notification_id"]: i["seq"] for i in older["items"] + page["items"]}
    events: list[dict[str, Any]] = []
    ids: list[str] = []

    async def read_stream() -> None:
        stream_headers = {**headers, "Last-Event-ID": str(seq_of[nids[1]])}
        async with api.stream("GET", "/inbox/stream", headers=stream_headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    ids.append(line[4:])
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if len(events) == 4:
                        return

    reader = asyncio.create_task(read_stream())
    await _eventually(lambda: asyncio.sleep(0, len(events) >= 3))
    late = await _send(api, headers, user, title="late")
    await asyncio.wait_for(reader, 10)
    assert [e["title"] for e in events] == ["n2", "n3", "n4", "late"]
    assert events[-1]["notification_id"] == late["notification_id"]
    assert ids == [str(e["seq"]) for e in events]
    assert (await api.post("/inbox/read-all", headers=headers)).json()["unread_count"] == 0


async def test_batch_of_1000_arrives_exactly_once(
    api: httpx.AsyncClient, auth: Auth, webhook_receiver: FakeWebhookReceiver
) -> None:
    user = _user()
    headers = auth(user, "notify:send")
    hook, _ = await _register_hook(api, headers, webhook_receiver)
    webhook_receiver.script(hook, Scripted(500), Scripted(503))  # two of them need a retry
    items = [{"user_id": user, "title": f"b{i}", "message": "batch"} for i in range(1000)]
    r = await api.post("/batch-notifications", headers=headers, json={"notifications": items})
    assert r.status_code == 202, r.text
    batch = r.json()
    assert batch["count"] == 1000 and len(set(batch["notification_ids"])) == 1000

    async def done() -> dict[str, Any] | None:
        body = (await api.get(f"/batch-status/{batch['batch_id']}", headers=headers)).json()
        return body if body["status"] == "done" else None

    status = await _eventually(done, timeout=60, interval=0.3)
    assert status["counts"]["delivered"] == 1000, status
    assert status["planned"] == 1000 and status["failures"] == []
    received = [json.loads(b)["data"]["notification_id"] for b in hook.received]
    assert sorted(received) == sorted(batch["notification_ids"])
    # A receiver drops repeats by webhook-id (Standard Webhooks). A repeat can only follow an
    # attempt whose answer never came back in time; the ledger must show that timeout.
    for msg_id in hook.duplicate_ids:
        nid = hook.id_to_notification[msg_id]
        history = (await _status(api, headers, nid))["deliveries"][0]["history"]
        assert any((a["error"] or "").startswith("timeout") for a in history), history
    assert webhook_receiver.attempts[hook.name] == 1002 + len(hook.duplicate_ids)
    assert (await api.get(f"/batch-status/{batch['batch_id']}", headers=auth(_user(), ""))).status_code == 404


async def test_batch_failures_are_listed(
    api: httpx.AsyncClient, auth: Auth, push_service: FakePushService
) -> None:
    user = _user()
    headers = auth(user, "notify:send")
    browser, _ = await _register_browser(api, headers, push_service)
    push_service.script(browser, Scripted(400))
    items = [{"user_id": user, "title": f"f{i}"} for i in range(3)]
    r = await api.post("/batch-notifications/", headers=headers, json={"notifications": items})
    batch = r.json()

    async def done() -> dict[str, Any] | None:
        body = (await api.get(f"/batch-status/{batch['batch_id']}/", headers=headers)).json()
        return body if body["status"] == "done" else None

    status = await _eventually(done)
    assert status["counts"]["delivered"] == 2 and status["counts"]["failed"] == 1
    (failure,) = status["failures"]
    assert failure["status"] == "failed" and failure["http_status"] == 400


async def test_batch_of_10000_is_accepted_quickly(api: httpx.AsyncClient, auth: Auth) -> None:
    sender = auth(_user(), "notify:send")
    items = [{"user_id": f"nobody-{i % 100}", "title": "t", "message": "m"} for i in range(10_000)]
    body = json.dumps({"notifications": items})
    started = time.perf_counter()
    r = await api.post(
        "/batch-notifications/",
        headers={**sender, "Content-Type": "application/json"},
        content=body,
    )
    elapsed = time.perf_counter() - started
    assert r.status_code == 202, r.text
    assert len(r.json()["notification_ids"]) == 10_000
    print(f"10,000-notification batch accepted in {elapsed:.3f}s")
    assert elapsed < 3.0

    # Drain it before the next test: its chunks would otherwise still hold the worker while
    # that test waits for its own notification. Nobody here has a device:
    # every one is planned, with no delivery.
    batch_id = r.json()["batch_id"]

    async def drained() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(f"/batch-status/{batch_id}", headers=sender)).json()
        return body if body["status"] == "done" else None

    started = time.perf_counter()
    status = await _eventually(drained, timeout=180, interval=0.5)
    print(f"... and drained in {time.perf_counter() - started:.1f}s: {status['counts']}")
    assert status["planned"] == 10_000 and set(status["counts"].values()) == {0}, status


async def test_ttl_zero_is_sent_once_now(
    api: httpx.AsyncClient, auth: Auth, push_service: FakePushService
) -> None:
    user = _user()
    headers = auth(user, "")
    browser, _ = await _register_browser(api, headers, push_service)
    sent = await _send(api, headers, user, ttl=0)
    status = await _settled(api, headers, sent["notification_id"])
    assert status["status"] == "delivered", status
    assert browser.ttls == [0]
