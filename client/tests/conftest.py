"""The whole platform for the SDK and the command: a gateway in front of every service.

Real processes, started once per session: task-service (the root `task_stack`, with its
worker), scraping-service and notification-service with one worker each, and the gateway.
The web site and the OpenAI-compatible API the scraper reaches are local servers speaking
their protocols (scraping-service's own test fakes).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

import testkit
from testkit import Stack

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scraping-service/tests"))

from clientkit import Platform, User
from scrape_fakes import E2E_KEY, FakeOpenAI, PageServer


@pytest.fixture(scope="session")
async def client_fakes() -> AsyncIterator[tuple[FakeOpenAI, PageServer]]:
    openai_server = await FakeOpenAI(api_key=E2E_KEY).start()
    pages = await PageServer().start()
    try:
        yield openai_server, pages
    finally:
        await pages.stop()
        await openai_server.stop()


@pytest.fixture(scope="session")
def platform(
    infra: Path, task_stack: Stack, client_fakes: tuple[FakeOpenAI, PageServer]
) -> Iterator[Platform]:
    openai_server, pages = client_fakes
    vhost = os.environ["TEST_SESSION_VHOST"] + "_client"  # no other worker of the session takes these
    testkit.ensure_vhost(vhost)
    hook_port = testkit.free_port()
    env = {
        **os.environ,
        "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        "OPENAI_BASE_URL": openai_server.base_url,
        "OUTBOUND_ALLOWLIST": f"127.0.0.1:{pages.port},127.0.0.1:{hook_port}",
        "SCRAPE_HOST_RATE": "100",
        "SCRAPE_HOST_BURST": "50",
    }
    env.pop("OPENAI_API_KEY", None)
    stack = Stack(env, infra)
    try:
        scraping = stack.api("scraping_service", "scraping")
        notifications = stack.api("notification_service", "notifications")
        stack.worker("scraping_service.worker", "scraping", concurrency=1)
        stack.worker("notification_service.worker", "notifications", concurrency=1)
        gateway = stack.api(
            "gateway",
            "gateway",
            {
                "TASK_SERVICE_URL": task_stack.urls["task"],
                "SCRAPING_SERVICE_URL": scraping,
                "NOTIFICATION_SERVICE_URL": notifications,
            },
        )
        yield Platform(
            url=gateway,
            services={"task": task_stack.urls["task"], "scraping": scraping, "notifications": notifications},
            pages=pages,
            openai_key=E2E_KEY,
            hook_port=hook_port,
        )
    finally:
        stack.stop()
        testkit.delete_vhost(vhost)


@pytest.fixture
def new_user(token: Callable[..., str]) -> Callable[..., User]:
    """A user of its own for each call, so tests never see each other's tasks or inbox."""

    def make(scopes: str = "tasks scrape cache") -> User:
        sub = f"sdk-{uuid.uuid4().hex[:10]}"
        return User(sub, token(sub, scopes))

    return make
