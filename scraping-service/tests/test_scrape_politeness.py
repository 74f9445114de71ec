from __future__ import annotations

import asyncio
import itertools
import os
import uuid

import pytest
from redis.asyncio import Redis

from scraping_service.politeness import BUCKET_PREFIX, HostThrottle, PolitenessTimeout, ThrottlePolicy


def host() -> str:
    return f"h{uuid.uuid4().hex[:12]}.example"


# The times asserted here are Redis's (the only clock the throttle uses), read from what it
# reserved, not gaps between wake-ups measured here: a loaded machine wakes a sleeper late,
# which makes client-side gaps uneven without the throttle being wrong.


async def redis_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def reserved_slot_ms(redis: Redis, h: str, interval_ms: int) -> int:
    """The slot the last acquire on `h` reserved, by Redis's clock. Exact when bursts are off
    (burst 1, or a Crawl-delay) or a cool-down set the slot: the bucket then holds slot +
    interval. The bucket holds microseconds (the shared GCRA's unit)."""
    return int(await redis.get(BUCKET_PREFIX + h)) // 1000 - interval_ms


async def test_requests_to_one_host_are_spaced(redis: Redis) -> None:
    throttle = HostThrottle(redis, ThrottlePolicy(requests_per_second=10, burst=1, max_wait_s=5))
    h = host()
    waits, slots = [], []
    for _ in range(4):
        waits.append(await throttle.acquire(h))
        slots.append(await reserved_slot_ms(redis, h, 100))
        # The caller went no earlier than its slot (2 ms: clock rounding).
        assert await redis_ms(redis) >= slots[-1] - 2
    assert waits[0] == 0
    assert all(0 <= w <= 0.1 for w in waits)
    assert all(b - a >= 100 for a, b in itertools.pairwise(slots)), slots  # 10 per second


async def test_burst_then_rate(redis: Redis) -> None:
    # One per second after a burst of 3: the fourth call waits for most of a second, however
    # slowly this machine makes the four calls (four round trips take far less).
    throttle = HostThrottle(redis, ThrottlePolicy(requests_per_second=1, burst=3, max_wait_s=5))
    h = host()
    waits = [await throttle.acquire(h) for _ in range(4)]
    assert waits[:3] == [0, 0, 0]
    assert 0.5 < waits[3] <= 1.0, waits


async def test_concurrent_workers_share_the_bucket(redis: Redis) -> None:
    # Separate clients stand in for separate worker processes: the bucket lives in Redis.
    clients = [Redis.from_url(os.environ["REDIS_URL"]) for _ in range(4)]
    try:
        throttles = [HostThrottle(c, ThrottlePolicy(20, 1, 5)) for c in clients]
        h = host()
        before = await redis_ms(redis)
        waits = await asyncio.gather(*(throttles[i % 4].acquire(h) for i in range(8)))
        # Eight slots, each 50 ms after the one before, whoever reserved it: the bucket now
        # reaches at least 8 x 50 ms past the start. Two reservations made of one reading
        # (a race), or a bucket per client, would leave it short.
        assert int(await redis.get(BUCKET_PREFIX + h)) - before >= 8 * 50
        assert all(0 <= w <= 7 * 0.05 for w in waits), waits  # nobody waits past the 8th slot
    finally:
        for c in clients:
            await c.aclose()


async def test_other_hosts_are_not_held_up(redis: Redis) -> None:
    throttle = HostThrottle(redis, ThrottlePolicy(requests_per_second=1, burst=1, max_wait_s=5))
    a, b = host(), host()
    await throttle.acquire(a)
    assert await throttle.acquire(b) == 0  # no wait at all: b's slot is now


async def test_crawl_delay_slows_down_and_disables_bursts(redis: Redis) -> None:
    throttle = HostThrottle(redis, ThrottlePolicy(requests_per_second=100, burst=5, max_wait_s=5))
    h = host()
    await throttle.acquire(h, crawl_delay=0.3)
    first = await reserved_slot_ms(redis, h, 300)
    waited = await throttle.acquire(h, crawl_delay=0.3)
    second = await reserved_slot_ms(redis, h, 300)
    # A burst of 5 would have let the second go at once; the Crawl-delay spaces them.
    assert second - first >= 300
    assert 0 <= waited <= 0.3


async def test_retry_after_cool_down_and_max_wait(redis: Redis) -> None:
    throttle = HostThrottle(redis, ThrottlePolicy(requests_per_second=100, burst=5, max_wait_s=0.5))
    h = host()
    before = await redis_ms(redis)
    await throttle.cool_down(h, 0.3)
    waited = await throttle.acquire(h)
    # Its slot is where the cool-down ends, not before (1 ms: rounding).
    assert await reserved_slot_ms(redis, h, 10) >= before + 300 - 1
    assert 0 <= waited <= 0.3
    await throttle.cool_down(h, 10)
    await throttle.cool_down(h, 1)  # never shortens
    with pytest.raises(PolitenessTimeout) as info:
        await throttle.acquire(h)
    assert 9 <= info.value.wait_s <= 10
    assert "slow down" in str(info.value)
