from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from notify_fakes import FakePushService, FakeWebhookReceiver

import testkit

# The session's own Redis database (claimed by the root conftest, shared with task-service so
# task-status sees these tasks) and a vhost of this suite's own within the session.
NOTIFY_REDIS_URL = os.environ["REDIS_URL"]
NOTIFY_VHOST = os.environ["TEST_SESSION_VHOST"] + "_notify"
# A fixed test-only key: two runs of this suite side by side then sign alike.
TEST_VAPID_PRIVATE_KEY = "fkQACps6L-AjMFe-dWbnJYxwD1YkANItm734BzgDmHQ"
# Fast retries so the retry tests take seconds; loopback allowed as an outbound target.
NOTIFY_ENV = {
    "REDIS_URL": NOTIFY_REDIS_URL,
    "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{NOTIFY_VHOST}",
    "OUTBOUND_ALLOWLIST": "127.0.0.1",
    "NOTIFY_RETRY_BASE_SECONDS": "0.3",
    "NOTIFY_RETRY_CAP_SECONDS": "2",
    "NOTIFY_HTTP_TIMEOUT": "10",
    "NOTIFY_STUCK_AFTER_SECONDS": "5",
    "VAPID_SUBJECT": "mailto:tests@example.com",
    "VAPID_PRIVATE_KEY": TEST_VAPID_PRIVATE_KEY,
    # Every receiver here is on 127.0.0.1, one host: the suite's batches are not what pacing
    # is tested with (test_notify_limits.py runs a stack of its own with a low pace).
    "NOTIFY_MAX_PER_HOST_PER_SECOND": "100000",
}


class NotifyStack:
    def __init__(self, log_dir: Path) -> None:
        self.env = {**os.environ, **NOTIFY_ENV}
        self.log_dir = log_dir
        self.procs: list[testkit.Proc] = []
        self.url = ""

    def start(self) -> NotifyStack:
        port = testkit.free_port()
        self.procs.append(testkit.start_api("notification_service", port, self.env, self.log_dir))
        self.url = f"http://127.0.0.1:{port}"
        self.procs.append(
            testkit.start_worker("notification_service.worker", "notifications", self.env, self.log_dir)
        )
        return self

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@pytest.fixture(scope="session")
def notify_redis_url() -> str:
    return NOTIFY_REDIS_URL


@pytest.fixture(scope="session")
def notify_stack(infra: Path, notify_redis_url: str) -> Iterator[NotifyStack]:
    testkit.ensure_vhost(NOTIFY_VHOST)
    stack = NotifyStack(infra)
    try:
        yield stack.start()
    finally:
        stack.stop()
        testkit.delete_vhost(NOTIFY_VHOST)


@pytest.fixture
async def api(notify_stack: NotifyStack) -> AsyncIterator[httpx.AsyncClient]:
    base = notify_stack.url + "/smart_application/tasks"
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield client


@pytest.fixture
async def push_service() -> AsyncIterator[FakePushService]:
    service = await FakePushService().start()
    try:
        yield service
    finally:
        await service.stop()


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[FakeWebhookReceiver]:
    receiver = await FakeWebhookReceiver().start()
    try:
        yield receiver
    finally:
        await receiver.stop()
