"""The shared GCRA pacer against the real Redis: a pace holds across processes, leases or not."""

from __future__ import annotations

import asyncio
import os
import random
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


class CountingPacer(Pacer):
    """The real Pacer (real Redis), counting its reserve calls."""

    calls = 0

    async def reserve(
        self, key: str, *, interval_s: float, burst: int = 1, max_wait_s: float, count: int = 1
    ) -> float:
        self.calls += 1
        return await super().reserve(
            key, interval_s=interval_s, burst=burst, max_wait_s=max_wait_s, count=count
        )


async def test_a_pace_far_above_the_send_rate_costs_a_redis_call_per_lease_and_no_waits() -> None:
    # 1,000,000 a second against about 1,000 sends a second: leases of 64 slots, the next
    # one reserved while the senders still hold half of the current one (a second's
    # lateness is allowed, so no slot is skipped on a slow machine).
    client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    pacer = CountingPacer(client, f"test:pace:{uuid.uuid4().hex}:")
    paced = HostPacer(pacer, 1_000_000, max_wait_s=10, lease_seconds=1.0)
    assert paced.lease == 64
    sends = 0

    async def sender(turns: int) -> None:
        nonlocal sends
        for _ in range(turns):
            assert await paced.wait_turn("receiver.example") == 0.0
            sends += 1
            await asyncio.sleep(0.002)  # the request itself

    try:
        await asyncio.gather(sender(256), sender(256))
        assert sends == 512
        # 512 turns: 8 leases (and the 9th reserved ahead), far under one call per 32 sends.
        assert pacer.calls == paced.reservations
        assert 8 <= pacer.calls <= sends / 32
        # Only the two senders' first turns waited on Redis: no lease was in hand yet.
        assert paced.redis_waits == 2
    finally:
        await client.aclose()


async def test_slots_left_over_from_before_an_idle_spell_are_skipped_not_burst() -> None:
    client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    paced = HostPacer(Pacer(client, f"test:pace:{uuid.uuid4().hex}:"), 1000, max_wait_s=10)
    assert paced.lease == 20  # 20 ms of slots, 1 ms apart; a slot 20 ms late is skipped
    loop = asyncio.get_running_loop()
    try:
        # 15 turns: the current lease has 5 slots left and the next one is reserved ahead.
        for _ in range(15):
            await paced.wait_turn("receiver.example")
        await asyncio.sleep(0.1)  # both leases' slots go by unused
        times: list[float] = []

        async def send() -> None:
            await paced.wait_turn("receiver.example")
            times.append(loop.time())

        await asyncio.gather(*(send() for _ in range(10)))
        # Paced from fresh slots 1 ms apart, not 25 stale ones spent at once.
        assert max(times) - min(times) >= 9 * 0.001 * 0.8
        # The first lease, the one reserved ahead of it, a fresh one after the idle spell and,
        # once half of that was handed out, the one ahead of it.
        assert paced.reservations == 4
    finally:
        await client.aclose()


@pytest.mark.timeout(20, method="thread")
async def test_senders_arriving_as_a_lease_lands_all_get_their_turns() -> None:
    # 128 senders with requests of 0 to 2 ms: some arrive in the loop turn in which a
    # reservation finished. They must find its lease (once a pacer that stored it a turn
    # later spun in `wait_turn` forever, holding the loop). Seeded: the same run each time.
    client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    paced = HostPacer(Pacer(client, f"test:pace:{uuid.uuid4().hex}:"), 1_000_000, max_wait_s=10)
    rng = random.Random(7)
    sends = 0

    async def sender() -> None:
        nonlocal sends
        for _ in range(50):
            await paced.wait_turn("receiver.example")
            sends += 1
            await asyncio.sleep(rng.random() * 0.002)

    try:
        await asyncio.gather(*(sender() for _ in range(128)))
        assert sends == 128 * 50
        # One reservation per 64 turns (and one ahead), however the turns interleave.
        assert paced.reservations <= sends / 64 + 2
    finally:
        await client.aclose()
