"""Root fixtures: the real Redis, the real RabbitMQ, and real service and worker processes.

Tests run against their own Redis database and RabbitMQ vhost, so a platform started with
`make run` on the same machine is never touched.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

import testkit
from testkit import Stack

# Each session has its own vhost and Redis database: sessions may run side by side, and a
# platform started with `make run` (vhost "/", database 0) is never touched.
SESSION_VHOST = f"{testkit.TEST_VHOST}_{os.getpid()}"
SESSION_DB = testkit.claim_redis_db()
os.environ.update(
    testkit.test_env(
        {
            "REDIS_URL": f"redis://127.0.0.1:6379/{SESSION_DB}",
            "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{SESSION_VHOST}",
            "TEST_SESSION_VHOST": SESSION_VHOST,
        }
    )
)

from shared import BaseServiceSettings, mint_token


@pytest.fixture(scope="session")
def settings() -> BaseServiceSettings:
    return BaseServiceSettings()


@pytest.fixture(scope="session")
def token(settings: BaseServiceSettings) -> Callable[..., str]:
    def make(sub: str = "alice", scopes: str = "tasks scrape cache", ttl: int = 3600) -> str:
        return mint_token(settings, sub, scopes.split(), ttl)

    return make


@pytest.fixture(scope="session")
def auth(token: Callable[..., str]) -> Callable[..., dict[str, str]]:
    def headers(sub: str = "alice", scopes: str = "tasks scrape cache") -> dict[str, str]:
        return {"Authorization": f"Bearer {token(sub, scopes)}"}

    return headers


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Redis and RabbitMQ answer; this session's vhost exists (and goes at the end)."""
    testkit.reap_stale_vhosts()
    testkit.ensure_vhost(SESSION_VHOST)
    try:
        yield tmp_path_factory.mktemp("logs")
    finally:
        testkit.delete_vhost(SESSION_VHOST)
        testkit.release_redis_db(SESSION_DB)


@pytest.fixture(scope="session")
def task_stack(infra: Path) -> Iterator[Stack]:
    """task-service's API and one worker on queue `default`."""
    callback_port = testkit.free_port()
    stack = Stack({**os.environ, "OUTBOUND_ALLOWLIST": f"127.0.0.1:{callback_port}"}, infra)
    stack.urls["callback"] = f"http://127.0.0.1:{callback_port}/hook"
    try:
        stack.api("task_service", "task")
        stack.worker("task_service.worker", "default", concurrency=2)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def task_client(task_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=task_stack.urls["task"], timeout=30) as client:
        yield client


LOCAL_STACK_HEALTH = [
    "http://127.0.0.1:8000/health",
    "http://127.0.0.1:8001/health",
    "http://127.0.0.1:8002/health",
    "http://127.0.0.1:8003/health",
    "http://127.0.0.1:9100/metrics",
    "http://127.0.0.1:9101/metrics",
    "http://127.0.0.1:9102/metrics",
    "http://127.0.0.1:9103/metrics",
    "http://127.0.0.1:9104/metrics",
]


@pytest.fixture(scope="session")
def local_stack(infra: Path) -> Iterator[testkit.Proc]:
    """The whole platform as `make run` starts it (deploy/local/run.py), on its standard ports."""
    for url in LOCAL_STACK_HEALTH:
        port = int(url.split(":")[2].split("/")[0])
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                pytest.fail(f"port {port} is taken (is `make run` running?); the local stack needs it")
    # A vhost of its own: task_stack's worker also consumes `default` in the session vhost.
    vhost = SESSION_VHOST + "_local"
    testkit.ensure_vhost(vhost)
    env = {
        "PYTHONUNBUFFERED": "1",
        "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        # Webhook receivers of the tests listen on loopback (tests/deploy/test_prometheus_live.py).
        "OUTBOUND_ALLOWLIST": "127.0.0.1",
    }
    proc = testkit.Proc(
        "make-run", [sys.executable, "deploy/local/run.py"], env, infra / "make-run.log"
    ).start()
    try:
        for url in LOCAL_STACK_HEALTH:
            proc.wait_http(url, timeout=60)
        for node in ("task@", "scraping@", "notifications@"):
            proc.wait_for_log(node, timeout=60)  # the banner comes before, "<node> ready." after
        deadline = time.monotonic() + 60
        while proc.log_text().count(" ready.") < 3:
            assert time.monotonic() < deadline, proc.log_text()[-3000:]
            time.sleep(0.2)
        yield proc
    finally:
        import psutil

        children = psutil.Process(proc.pid).children(recursive=True) if proc.alive() else []
        proc.stop(timeout=20)
        _, alive = psutil.wait_procs(children, timeout=10)
        for leftover in alive:
            leftover.kill()
        testkit.delete_vhost(vhost)
        assert not alive, f"make run left orphans behind: {[p.pid for p in alive]}"
