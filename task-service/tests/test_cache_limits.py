"""The cache's fair share (API.md "Fair share"): TTL bounds, value size, per-user quotas, and a
full cache Redis that answers 503 while the platform's state is untouched."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from test_tasks_api import P, assert_envelope, submit

import testkit
from testkit import Stack

MAX_TTL = 30 * 24 * 3600


@pytest.fixture(scope="module")
def small_quota_api(task_stack: Stack, infra: Path) -> Iterator[str]:
    """A task-service API with small cache quotas, on the session's Redis and worker."""
    stack = Stack(dict(task_stack.env), infra)
    env = {"CACHE_MAX_KEYS_PER_USER": "4", "CACHE_MAX_BYTES_PER_USER": "10000"}
    try:
        yield stack.api("task_service", "task", extra_env=env)
    finally:
        stack.stop()


@pytest.fixture
def private_redis(infra: Path) -> Iterator[int]:
    """A redis-server of the test's own, tiny and refusing to evict: full after a few writes."""
    port = testkit.free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with redis.Redis(port=port) as client:
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            else:
                raise RuntimeError("private redis did not start")
        yield port
    finally:
        proc.kill()
        proc.wait()


async def test_cache_ttl_defaults_to_a_day_and_is_bounded(task_client, auth) -> None:
    h = auth("ttl-user", "cache")
    r = await task_client.put(f"{P}/cache/no-ttl", json={"value": 1}, headers=h)
    assert r.status_code == 200 and r.json()["ttl"] == 86_400
    r = await task_client.put(f"{P}/cache/max-ttl", json={"value": 1, "ttl": MAX_TTL}, headers=h)
    assert r.status_code == 200 and r.json()["ttl"] == MAX_TTL
    assert (await task_client.get(f"{P}/cache/max-ttl", headers=h)).json()["ttl"] >= MAX_TTL - 10
    r = await task_client.put(f"{P}/cache/too-long", json={"value": 1, "ttl": MAX_TTL + 1}, headers=h)
    assert_envelope(r, 422, "invalid_ttl")
    assert_envelope(await task_client.get(f"{P}/cache/too-long", headers=h), 404)


async def test_cache_value_past_one_mebibyte_is_413(task_client, auth) -> None:
    h = auth("size-user", "cache")
    at_limit = "x" * (1024 * 1024 - 2)  # its JSON, with the quotes, is exactly 1 MiB
    r = await task_client.put(f"{P}/cache/big", json={"value": at_limit}, headers=h)
    assert r.status_code == 200, r.text
    r = await task_client.put(f"{P}/cache/big", json={"value": at_limit + "x"}, headers=h)
    assert_envelope(r, 413, "value_too_large")
    assert len((await task_client.get(f"{P}/cache/big", headers=h)).json()["value"]) == len(at_limit)


async def test_cache_full_to_quota_is_413_while_others_task_records_survive(
    small_quota_api: str, auth, wait
) -> None:
    async with httpx.AsyncClient(base_url=small_quota_api, timeout=30) as client:
        bob = auth("quota-bob", "tasks cache")
        task = await submit(client, bob, task_type="noop", data={"keep": "me"})
        alice = auth("quota-alice", "cache")
        for i in range(4):
            assert (await client.put(f"{P}/cache/k{i}", json={"value": i}, headers=alice)).status_code == 200
        r = await client.put(f"{P}/cache/k4", json={"value": 4}, headers=alice)
        assert_envelope(r, 413, "cache_quota_exceeded")
        # Rewriting a key she holds is no new key; deleting one frees its place, exactly.
        assert (await client.put(f"{P}/cache/k0", json={"value": "again"}, headers=alice)).status_code == 200
        assert (await client.delete(f"{P}/cache/k1", headers=alice)).status_code == 204
        assert (await client.put(f"{P}/cache/k4", json={"value": 4}, headers=alice)).status_code == 200
        assert_envelope(await client.put(f"{P}/cache/k5", json={"value": 5}, headers=alice), 413)

        # Bytes: 10,000 per user; a rewrite counts its new size instead of the old one.
        carol = auth("quota-carol", "cache")
        assert (
            await client.put(f"{P}/cache/a", json={"value": "x" * 6000}, headers=carol)
        ).status_code == 200
        r = await client.put(f"{P}/cache/b", json={"value": "x" * 6000}, headers=carol)
        assert_envelope(r, 413, "cache_quota_exceeded")
        assert "10000 bytes" in r.json()["error"]["message"]
        assert (
            await client.put(f"{P}/cache/a", json={"value": "x" * 9000}, headers=carol)
        ).status_code == 200

        # Expired entries no longer count.
        dave = auth("quota-dave", "cache")
        for i in range(4):
            r = await client.put(f"{P}/cache/t{i}", json={"value": i, "ttl": 1}, headers=dave)
            assert r.status_code == 200
        assert_envelope(await client.put(f"{P}/cache/late", json={"value": 0}, headers=dave), 413)
        await asyncio.sleep(1.3)
        assert (await client.put(f"{P}/cache/late", json={"value": 0}, headers=dave)).status_code == 200

        # Nobody else paid for it: bob's task record is whole, and his cache has room.
        done = await wait(client, task["task_id"], bob, {"SUCCESS"})
        assert done["result"] == {"echo": {"keep": "me"}}
        assert (await client.put(f"{P}/cache/mine", json={"value": 1}, headers=bob)).status_code == 200


async def test_full_cache_redis_answers_503_and_leaves_task_records_alone(
    private_redis: int, task_stack: Stack, infra: Path, auth, wait
) -> None:
    stack = Stack(dict(task_stack.env), infra)
    try:
        url = stack.api(
            "task_service", "task", extra_env={"CACHE_REDIS_URL": f"redis://127.0.0.1:{private_redis}/0"}
        )
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            h = auth("oom-user", "tasks cache")
            before = await submit(client, h, task_type="noop", data={})
            r = await client.get("/ready")
            assert r.status_code == 200 and r.json()["checks"]["cache_redis"] == "ok"
            statuses = []
            for i in range(40):
                r = await client.put(f"{P}/cache/fill{i}", json={"value": "v" * 400_000}, headers=h)
                statuses.append(r.status_code)
                if r.status_code != 200:
                    break
            assert statuses[0] == 200 and statuses[-1] == 503, statuses
            err = assert_envelope(r, 503, "redis_out_of_memory")
            assert "memory" in err["message"] and r.headers["Retry-After"]
            # Reads and deletes still work; a delete makes room again.
            assert (await client.get(f"{P}/cache/fill0", headers=h)).status_code == 200
            assert (await client.delete(f"{P}/cache/fill0", headers=h)).status_code == 204
            r = await client.put(f"{P}/cache/after", json={"value": "small"}, headers=h)
            assert r.status_code == 200, r.text
            # The state Redis never saw the cache: earlier and new task records are whole.
            assert (await wait(client, before["task_id"], h, {"SUCCESS"}))["status"] == "SUCCESS"
            after = await submit(client, h, task_type="noop", data={})
            assert (await wait(client, after["task_id"], h, {"SUCCESS"}))["status"] == "SUCCESS"
        with redis.Redis.from_url(os.environ["REDIS_URL"]) as state:
            assert not list(state.scan_iter(match="cache:oom-user:*"))
    finally:
        stack.stop()


async def test_cache_batch_past_the_quota_is_413_and_applies_nothing(small_quota_api: str, auth) -> None:
    async with httpx.AsyncClient(base_url=small_quota_api, timeout=30) as client:
        h = auth("quota-erin", "cache")
        body = {"set": {f"k{i}": {"value": i} for i in range(3)}}
        assert (await client.post(f"{P}/cache-batch/", json=body, headers=h)).json()["set"] == 3
        # Three more less one deleted make 5 of 4: refused whole, the delete included.
        body = {
            "get": ["k0"],
            "set": {"k3": {"value": 3}, "k4": {"value": 4}, "k5": {"value": 5}},
            "delete": ["k1"],
        }
        r = await client.post(f"{P}/cache-batch/", json=body, headers=h)
        assert_envelope(r, 413, "cache_quota_exceeded")
        listed = (await client.get(f"{P}/cache", headers=h)).json()["items"]
        assert [i["key"] for i in listed] == ["k0", "k1", "k2"]
        # The same sets with two deletes fit: the quota counts the batch's end state.
        body["delete"] = ["k1", "k2"]
        r = await client.post(f"{P}/cache-batch/", json=body, headers=h)
        assert r.status_code == 200 and r.json() == {"values": {"k0": 0}, "set": 3, "deleted": 2}, r.text
        # Bytes: 10,000 per user; a batch over it changes nothing either.
        big = {"set": {"k0": {"value": "x" * 5000}, "k3": {"value": "y" * 5000}}}
        assert_envelope(
            await client.post(f"{P}/cache-batch/", json=big, headers=h), 413, "cache_quota_exceeded"
        )
        after = (await client.post(f"{P}/cache-batch/", json={"get": ["k0", "k3", "k4"]}, headers=h)).json()
        assert after["values"] == {"k0": 0, "k3": 3, "k4": 4}
