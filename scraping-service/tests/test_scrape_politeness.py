from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid

import pytest
from redis.asyncio import Redis

from scraping_service.politeness import HostThrottle, PolitenessTimeout, ThrottlePolicy


def host() -> str:
    return f"h{uuid.uuid4().hex[:12]}.example"


async def test_requests_to_one_host_are_spaced(redis: Redis) -> None:
    throttle = HostThrottle(redis, ThrottlePolicy(requests_per_second=10, burst=1, max_wait_s=5))
    h = host()
    t0 = time.monotonic()
    waits = [await throttle.acquire(h) for _ in range(4)]
    elapsed = time.monotonic() - t0
    assert waits[0] == 0
    assert elapsed >= 0.28  # three gaps of 100 ms
    assert elapsed < 1.0


async def test_burst_then_rate(redis: Redis) -> None:
    throttle = HostThrottle(redis, ThrottlePolicy(requests_per_second=5, burst=3, max_wait_s=5))
    h = host()
    waits = [await throttle.acquire(h) for _ in range(4)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3] > 0.1


async def test_concurrent_workers_share_the_bucket(redis: Redis) -> None:
    # Separate clients stand in for separate worker processes: the bucket lives in Redis.
    clients = [Redis.from_url(os.environ["REDIS_URL"]) for _ in range(4)]
    try:
        throttles = [HostThrottle(c, ThrottlePolicy(20, 1, 5)) for c in clients]
        h = host()
        stamps: list[float] = []

        async def go(t: HostThrottle) -> None:
            await t.acquire(h)
            stamps.append(time.monotonic())

        await asyncio.gather(*(go(throttles[i % 4]) for i in range(8)))
        stamps.sort()
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert min(gaps) >= 0.035  # 50 ms slots, some scheduling slack
        assert stamps[-1] - stamps[0] >= 0.3
    finally:
        for c in clients:
            await c.aclose()


async def test_other_hosts_are_not_held_up(redis: Redis) -> None:
    throttle = HostThrottle(redis, ThrottlePolicy(requests_per_second=1, burst=1, max_wait_s=5))
    a, b = host(), host()
    await throttle.acquire(a)
    t0 = time.monotonic()
    assert await throttle.acquire(b) == 0
    assert time.monotonic() - t0 < 0.1


async def test_crawl_delay_slows_down_and_disables_bursts(redis: Redis) -> None:
    throttle = HostThrottle(redis, ThrottlePolicy(requests_per_second=100, burst=5, max_wait_s=5))
    h = host()
    await throttle.acquire(h, crawl_delay=0.3)
    waited = await throttle.acquire(h, crawl_delay=0.3)
    assert 0.25 <= waited <= 0.35


async def test_retry_after_cool_down_and_max_wait(redis: Redis) -> None:
    throttle = HostThrottle(redis, ThrottlePolicy(requests_per_second=100, burst=5, max_wait_s=0.5))
    h = host()
    await throttle.cool_down(h, 0.3)
    waited = await throttle.acquire(h)
    assert 0.2 <= waited <= 0.35
    await throttle.cool_down(h, 10)
    await throttle.cool_down(h, 1)  # never shortens
    with pytest.raises(PolitenessTimeout) as info:
        await throttle.acquire(h)
    assert 9 <= info.value.wait_s <= 10
    assert "slow down" in str(info.value)
