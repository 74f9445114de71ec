"""The shared GCRA pacer against the real Redis: a pace holds across processes, leases or not."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
import redis.asyncio as aioredis

from shared import HostPacer, Pacer, PaceTooFar


async def test_two_processes_share_one_hosts_pace_with_leases() -> None:
    # Two clients stand for two worker processes; each pacer leases 10 slots at a time.
    clients = [aioredis.Redis.from_url(os.environ["REDIS_URL"]) for _ in range(2)]
    prefix = f"test:pace:{uuid.uuid4().hex}:"
    pacers = [HostPacer(Pacer(c, prefix), 200, max_wait_s=10, lease_seconds=0.05) for c in clients]
    assert pacers[0].lease == 10
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def send(pacer: HostPacer, host: str) -> None:
        await pacer.wait_turn(host)
        times.append(loop.time())

    try:
        await asyncio.gather(*(send(pacers[i % 2], "Receiver.example") for i in range(100)))
        # 100 turns at 200 a second take about half a second, whichever process took them.
        assert max(times) - min(times) >= 99 / 200 * 0.8
        # Another host has a pace of its own: no wait behind the first one's turns.
        assert await pacers[0].wait_turn("other.example") < 0.05
    finally:
        for c in clients:
            await c.aclose()


async def test_a_turn_further_than_max_wait_is_refused_and_not_booked() -> None:
    client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    pacer = Pacer(client, f"test:pace:{uuid.uuid4().hex}:")
    try:
        assert await pacer.reserve("h", interval_s=1.0, max_wait_s=0.5) == 0
        with pytest.raises(PaceTooFar) as info:
            await pacer.reserve("h", interval_s=1.0, max_wait_s=0.5)
        assert 0.5 < info.value.wait_s <= 1.0
        # The refused one took no slot: the next turn is still about a second after the first.
        assert 0.5 < await pacer.reserve("h", interval_s=1.0, max_wait_s=2) <= 1.0
    finally:
        await client.aclose()
