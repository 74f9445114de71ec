"""The rate limiter's pipelined Redis client, against the real Redis (asyncio and uvloop)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid

import orjson
import pytest
import redis
import uvloop

from gateway.pipelined_redis import PipelinedRedis, RedisReplyError, RedisUnavailable, Script, pack
from shared import GCRA_RESERVE_LUA

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9")
COUNTER = "return redis.call('INCR', KEYS[1])"


async def exercise(url: str) -> None:
    client = PipelinedRedis(url)
    try:
        assert await client.ping()
        # A script Redis has never seen: EVALSHA answers NOSCRIPT, the client falls back to EVAL.
        script = Script(client, f"-- {uuid.uuid4()}\n{COUNTER}")
        key = f"gw:test:{uuid.uuid4().hex}"
        results = await asyncio.gather(*(script(key) for _ in range(300)))
        # One connection, answers in order: every caller got its own increment.
        assert sorted(results) == list(range(1, 301))
        assert results == list(range(1, 301))
        with pytest.raises(RedisReplyError):
            await Script(client, "return redis.call('NOPE')")(key)
        assert await client.ping()  # an error reply does not break the connection
    finally:
        await client.aclose()


async def test_pipelined_calls_under_asyncio() -> None:
    await exercise(REDIS_URL)


def test_pipelined_calls_under_uvloop() -> None:
    # The gateway runs on uvloop, whose transports are not asyncio.Transport subclasses.
    uvloop.run(exercise(REDIS_URL))


async def test_selects_the_database_in_the_url() -> None:
    client = PipelinedRedis(REDIS_URL)
    key = f"gw:test:{uuid.uuid4().hex}"
    try:
        await client.execute(pack("SET", key, "here", "EX", 60))
    finally:
        await client.aclose()
    sync = redis.Redis.from_url(REDIS_URL)
    try:
        assert sync.get(key) == b"here"
    finally:
        sync.close()


async def test_reconnects_after_the_server_drops_the_connection() -> None:
    client = PipelinedRedis(REDIS_URL)
    sync = redis.Redis.from_url(REDIS_URL)
    try:
        client_id = await client.execute(pack("CLIENT", "ID"))
        sync.client_kill_filter(_id=client_id)
        await asyncio.sleep(0.05)
        # The loss may be noticed by this call; the next one reconnects.
        with contextlib.suppress(RedisUnavailable):
            await client.ping()
        assert await client.ping()
        assert await client.execute(pack("CLIENT", "ID")) != client_id
    finally:
        sync.close()
        await client.aclose()


async def test_a_server_that_never_answers_fails_within_the_timeout() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = PipelinedRedis(f"redis://127.0.0.1:{port}/0", timeout=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(RedisUnavailable):
            await asyncio.gather(*(client.ping() for _ in range(5)))
        assert time.monotonic() - started < 1.5
    finally:
        await client.aclose()
        listener.close()


async def test_nothing_listening_fails_fast() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = PipelinedRedis(f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()
    with pytest.raises(RedisUnavailable):
        await client.ping()
    assert time.monotonic() - started < 1.5
    await client.aclose()


async def test_gcra_script_counts_down_the_burst() -> None:
    client = PipelinedRedis(REDIS_URL)
    try:
        # The platform's one GCRA (shared's gcra_reserve.lua), as the rate limiter calls it.
        script = Script(client, GCRA_RESERVE_LUA)
        key = f"gw:rl:test-{uuid.uuid4().hex}"
        interval_us, burst = 1_000_000, 3
        args = orjson.dumps({"interval_us": interval_us, "burst": burst, "max_wait_us": 0, "count": 1})
        replies = [orjson.loads(await script(key, args.decode())) for _ in range(4)]
    finally:
        await client.aclose()
    assert [r["ok"] for r in replies] == [True, True, True, False]
    assert [r["remaining"] for r in replies] == [2, 1, 0, 0]
    assert [r["wait_us"] for r in replies[:3]] == [0, 0, 0]
    assert 0 < replies[3]["wait_us"] <= interval_us  # retry after at most one interval
    # Full again once the three slots taken have drained: about three intervals away.
    assert 2 * interval_us < replies[2]["reset_us"] <= 3 * interval_us
    assert replies[3]["reset_us"] <= replies[2]["reset_us"]
