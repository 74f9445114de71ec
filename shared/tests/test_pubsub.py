"""EventHub against the real Redis: one connection fanned out, unsubscribed when unused, and a
listener told to re-read (RESYNC) when its connection was lost or its queue overflowed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from shared import BaseServiceSettings, Signal
from shared._pubsub import QUEUE_SIZE, EventHub


@pytest.fixture
async def hub(settings: BaseServiceSettings) -> AsyncIterator[EventHub]:
    events = EventHub(settings)
    try:
        yield events
    finally:
        await events.aclose()


@pytest.fixture
async def r(settings: BaseServiceSettings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


def channel() -> str:
    return f"test:hub:{uuid.uuid4().hex}"


async def numsub(r: aioredis.Redis, name: str) -> int:
    ((_, n),) = await r.pubsub_numsub(name)
    return int(n)


async def test_hub_fans_one_subscription_out_to_every_listener_and_drops_it_when_unused(
    hub: EventHub, r: aioredis.Redis
) -> None:
    a, b = channel(), channel()
    async with hub.listen(a) as first, hub.listen(a) as second, hub.listen(b) as other:
        assert await numsub(r, a) == 1 and await numsub(r, b) == 1  # one subscriber per channel
        await r.publish(a, b"to-a")
        await r.publish(b, b"to-b")
        assert await first.get(5) == b"to-a"
        assert await second.get(5) == b"to-a"
        assert await other.get(5) == b"to-b"
        assert await other.get(0.1) is Signal.TIMEOUT
    deadline = time.monotonic() + 5
    while await numsub(r, a) or await numsub(r, b):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert hub.channel_count == 0


async def test_listener_gets_resync_after_the_hub_connection_is_killed(
    hub: EventHub, r: aioredis.Redis
) -> None:
    name = channel()
    async with hub.listen(name) as listener:
        host, port = hub._pubsub.connection._writer.get_extra_info("sockname")[:2]
        assert await r.client_kill_filter(_type=None, addr=f"{host}:{port}") == 1
        # The hub reconnects, subscribes again and tells the listener it may have missed events.
        assert await listener.get(15) is Signal.RESYNC
        await r.publish(name, b"after")
        assert await listener.get(5) == b"after"


async def test_a_listener_that_falls_behind_gets_resync_instead_of_a_partial_stream(
    hub: EventHub, r: aioredis.Redis
) -> None:
    name = channel()
    async with hub.listen(name) as listener:
        async with r.pipeline(transaction=False) as pipe:
            for i in range(QUEUE_SIZE + 10):
                pipe.publish(name, str(i))
            await pipe.execute()
        deadline = time.monotonic() + 10
        while not listener._lost:  # the hub reads them all; the queue holds QUEUE_SIZE
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert await listener.get(5) is Signal.RESYNC
        assert await listener.get(0.1) is Signal.TIMEOUT  # the backlog was dropped whole
        await r.publish(name, b"next")
        assert await listener.get(5) == b"next"
