"""Event streams through the real gateway: a per-user cap across replicas, a lifetime, leases,
and hundreds of open streams that leave other users' requests untouched (issue 10).

Real processes: two gateway replicas (more where a test needs its own settings), task-service
with its worker (the session's), notification-service. No notification worker: the inbox is
filled by the API itself; the delivery tasks wait in this module's own vhost.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

import testkit
from shared import BaseServiceSettings
from testkit import Stack

P = "/smart_application/tasks"
CAP = 20  # MAX_STREAMS_PER_USER's default


@dataclass
class Platform:
    stack: Stack
    env: dict[str, str]
    gateways: list[str]
    log_dir: Path

    def gateway(self, extra: dict[str, str]) -> testkit.Proc:
        """One more gateway replica with settings of its own; the caller stops it."""
        return testkit.start_api("gateway", testkit.free_port(), {**self.env, **extra}, self.log_dir)


@pytest.fixture(scope="module")
def platform(infra: Path, task_stack: Stack) -> Iterator[Platform]:
    vhost = os.environ["TEST_SESSION_VHOST"] + "_streams"
    testkit.ensure_vhost(vhost)
    stack = Stack({**os.environ, "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}"}, infra)
    try:
        notifications = stack.api("notification_service", "notifications")
        gateway_env = {
            **stack.env,
            "TASK_SERVICE_URL": task_stack.urls["task"],
            "SCRAPING_SERVICE_URL": f"http://127.0.0.1:{testkit.free_port()}",
            "NOTIFICATION_SERVICE_URL": notifications,
            "RATE_LIMIT_PER_MINUTE": "100000",
            "RATE_LIMIT_BURST": "10000",
        }
        gateways = [stack.api("gateway", f"gateway{i}", gateway_env) for i in range(2)]
        yield Platform(stack, gateway_env, gateways, infra)
    finally:
        stack.stop()
        testkit.delete_vhost(vhost)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=20)
    async with httpx.AsyncClient(timeout=httpx.Timeout(20, pool=None), limits=limits) as c:
        yield c


@pytest.fixture
async def redis_client(settings: BaseServiceSettings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


Auth = Callable[..., dict[str, str]]


# Open streams' chunk iterators: dropping one would close its connection.
_READERS: dict[int, AsyncIterator[bytes]] = {}


async def open_stream(
    client: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> tuple[httpx.Response, bytes]:
    """Open an event stream; its status and, when 200, its first chunk (the stream is live)."""
    resp = await client.send(client.build_request("GET", url, headers=headers), stream=True)
    if resp.status_code != 200:
        await resp.aread()
        await resp.aclose()
        return resp, b""
    reader = resp.aiter_raw()
    _READERS[id(resp)] = reader
    first = await anext(reader)
    return resp, first


async def close_stream(resp: httpx.Response) -> None:
    reader = _READERS.pop(id(resp), None)
    if reader is not None:
        await reader.aclose()  # type: ignore[attr-defined]
    await resp.aclose()


async def start_pending_task(client: httpx.AsyncClient, gateway: str, headers: dict[str, str]) -> str:
    """A task that stays PENDING for the whole test (a long countdown), so its stream stays open."""
    r = await client.post(
        f"{gateway}{P}/background-task/",
        json={"task_type": "noop", "data": {}, "countdown": 900},
        headers=headers,
    )
    assert r.status_code == 202, r.text
    task_id: str = r.json()["task_id"]
    return task_id


async def pubsub_connections(redis_client: aioredis.Redis) -> int:
    """Connections subscribed to a channel in this session's database (all our APIs use it)."""
    db = redis_client.connection_pool.connection_kwargs.get("db", 0)
    clients = await redis_client.client_list()
    return sum(1 for c in clients if int(c.get("db", -1)) == db and int(c.get("sub", 0)) > 0)


async def test_stream_cap_holds_across_replicas_while_300_streams_leave_others_answered(
    platform: Platform, client: httpx.AsyncClient, auth: Auth, redis_client: aioredis.Redis
) -> None:
    gw_a, gw_b = platform.gateways
    run = uuid.uuid4().hex[:6]
    # 10 users with 20 task-events streams each, 5 with 20 inbox streams each: 300 streams,
    # every user at the cap. 290 go through replica A, more than its pool of 256 ordinary
    # upstream connections; the first user's streams alternate between A and B.
    task_users = [f"st-{run}-t{i}" for i in range(10)]
    inbox_users = [f"st-{run}-i{i}" for i in range(5)]
    task_ids = {u: await start_pending_task(client, gw_a, auth(u, "tasks")) for u in task_users}
    plans: list[tuple[str, str, dict[str, str]]] = []
    for u in task_users:
        for n in range(CAP):
            gw = gw_b if u == task_users[0] and n % 2 else gw_a
            plans.append((u, f"{gw}{P}/task-events/{task_ids[u]}", auth(u, "tasks")))
    for u in inbox_users:
        plans += [(u, f"{gw_a}{P}/inbox/stream", auth(u, ""))] * CAP

    opened = await asyncio.wait_for(
        asyncio.gather(*(open_stream(client, url, h) for _, url, h in plans)), timeout=45
    )
    streams: dict[str, list[httpx.Response]] = {}
    for (user, _, _), (resp, first) in zip(plans, opened, strict=True):
        assert resp.status_code == 200, (user, resp.status_code, resp.text)
        assert first.startswith((b"event: progress", b"retry:")), first
        streams.setdefault(user, []).append(resp)
    try:
        assert sum(len(v) for v in streams.values()) == 300

        # The 21st stream of a user is refused, on either replica (the count is shared).
        capped = task_users[0]
        for gw in (gw_a, gw_b):
            resp, _ = await open_stream(
                client, f"{gw}{P}/task-events/{task_ids[capped]}", auth(capped, "tasks")
            )
            assert resp.status_code == 429
            error = resp.json()["error"]
            assert error["code"] == "too_many_streams" and int(resp.headers["Retry-After"]) > 0
        resp, _ = await open_stream(client, f"{gw_b}{P}/inbox/stream", auth(inbox_users[0], ""))
        assert resp.status_code == 429 and resp.json()["error"]["code"] == "too_many_streams"

        # Another user's ordinary requests, and the anonymous VAPID key, are answered at once.
        other = auth(f"st-{run}-other", "tasks")
        slowest = 0.0
        for gw in (gw_a, gw_b):
            for path, headers in (
                ("/tasks/", other),
                ("/inbox/", other),
                ("/webpush/vapid-public-key", {}),
            ):
                for _ in range(5):
                    started = time.monotonic()
                    r = await client.get(f"{gw}{P}{path}", headers=headers, timeout=10)
                    slowest = max(slowest, time.monotonic() - started)
                    assert r.status_code == 200, (path, r.status_code, r.text)
        assert slowest < 5.0, slowest

        # In the services, the 300 streams hold no Redis connection each: one subscriber per
        # API process (task-service, notification-service), where it was one per stream.
        assert await pubsub_connections(redis_client) <= 4
        channels = [f"t:ev:{t}" for t in task_ids.values()] + [f"n:iev:{u}" for u in inbox_users]
        assert [n for _, n in await redis_client.pubsub_numsub(*channels)] == [1] * len(channels)

        # Closing one of the capped user's streams frees a slot for a new one.
        await close_stream(streams[capped].pop())
        deadline = time.monotonic() + 10
        while True:
            resp, first = await open_stream(
                client, f"{gw_b}{P}/task-events/{task_ids[capped]}", auth(capped, "tasks")
            )
            if resp.status_code == 200:
                streams[capped].append(resp)
                break
            assert resp.status_code == 429 and time.monotonic() < deadline, resp.status_code
            await asyncio.sleep(0.1)
        assert first.startswith(b"event: progress")
    finally:
        await asyncio.gather(
            *(close_stream(r) for rs in streams.values() for r in rs), return_exceptions=True
        )
        for u in task_users:
            await client.post(f"{gw_a}{P}/task-cancel/{task_ids[u]}", headers=auth(u, "tasks"))

    # Every slot is given back when its stream closes, and the services unsubscribe.
    keys = [f"gw:streams:{u}" for u in task_users + inbox_users]
    deadline = time.monotonic() + 10
    while sum([await redis_client.zcard(k) for k in keys]) > 0:
        assert time.monotonic() < deadline, [await redis_client.zcard(k) for k in keys]
        await asyncio.sleep(0.1)
    while any(n for _, n in await redis_client.pubsub_numsub(*channels)):
        assert time.monotonic() < deadline, await redis_client.pubsub_numsub(*channels)
        await asyncio.sleep(0.1)


def parse_events(raw: bytes) -> list[tuple[str | None, str]]:
    """(id, data) of every complete event in an SSE body."""
    out = []
    for block in raw.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields:
            out.append((fields.get("id"), fields["data"]))
    return out


async def test_stream_ends_after_its_max_lifetime_and_the_inbox_resumes(
    platform: Platform, client: httpx.AsyncClient, auth: Auth, redis_client: aioredis.Redis
) -> None:
    proc = platform.gateway({"STREAM_MAX_SECONDS": "1"})
    gw = f"http://127.0.0.1:{proc.env['PORT']}"
    user = f"st-life-{uuid.uuid4().hex[:6]}"
    h = auth(user, "")
    try:
        r = await client.post(
            f"{gw}{P}/send-notification/", json={"user_id": user, "title": "one", "message": "m"}, headers=h
        )
        assert r.status_code == 202, r.text
        started = time.monotonic()
        async with client.stream("GET", f"{gw}{P}/inbox/stream?since=0", headers=h) as resp:
            assert resp.status_code == 200
            body = b"".join([chunk async for chunk in resp.aiter_raw()])  # ends by itself
        lasted = time.monotonic() - started
        assert 0.8 < lasted < 15, lasted
        events = parse_events(body)
        assert [e[0] for e in events] == ["1"]
        assert await redis_client.zcard(f"gw:streams:{user}") == 0  # its slot is free again

        # The client reconnects with Last-Event-ID and gets what came after, and only that.
        r = await client.post(
            f"{gw}{P}/send-notification/", json={"user_id": user, "title": "two", "message": "m"}, headers=h
        )
        assert r.status_code == 202, r.text
        async with client.stream("GET", f"{gw}{P}/inbox/stream", headers={**h, "Last-Event-ID": "1"}) as resp:
            body = b"".join([chunk async for chunk in resp.aiter_raw()])
        assert [e[0] for e in parse_events(body)] == ["2"]
        assert '"title":"two"' in parse_events(body)[0][1]
    finally:
        proc.stop()


async def test_a_killed_gateways_stream_slots_are_freed_after_the_lease(
    platform: Platform, client: httpx.AsyncClient, auth: Auth, redis_client: aioredis.Redis
) -> None:
    doomed = platform.gateway({"STREAM_LEASE_SECONDS": "3"})
    doomed_url = f"http://127.0.0.1:{doomed.env['PORT']}"
    survivor = platform.gateways[0]
    user = f"st-lease-{uuid.uuid4().hex[:6]}"
    h = auth(user, "")
    streams: list[httpx.Response] = []
    try:
        opened = await asyncio.gather(
            *(open_stream(client, f"{doomed_url}{P}/inbox/stream", h) for _ in range(CAP))
        )
        streams = [resp for resp, _ in opened]
        assert [resp.status_code for resp in streams] == [200] * CAP
        resp, _ = await open_stream(client, f"{survivor}{P}/inbox/stream", h)
        assert resp.status_code == 429

        doomed.kill()  # SIGKILL: no close, no release, no more renewals
        killed_at = time.monotonic()
        assert await redis_client.zcard(f"gw:streams:{user}") == CAP  # still held, by the lease
        while True:
            resp, _ = await open_stream(client, f"{survivor}{P}/inbox/stream", h)
            if resp.status_code == 200:
                streams.append(resp)
                break
            assert resp.status_code == 429
            assert time.monotonic() - killed_at < 30, "the dead gateway's slots never came back"
            await asyncio.sleep(0.25)
        waited = time.monotonic() - killed_at
        assert waited < 30, waited
        assert await redis_client.zcard(f"gw:streams:{user}") == 1  # only the new stream
    finally:
        await asyncio.gather(*(close_stream(r) for r in streams), return_exceptions=True)
        doomed.stop()
