"""Noisy neighbour: user A floods the queue while user B submits a trickle.

Reported: B's queue wait (submitted to started, p50/p99) on an empty queue and behind A's
flood, on our platform (fair queues) and on bare Celery (one FIFO queue) as the baseline; and
the flood's end-to-end rate, ours over HTTP against bare apply_async, with fairness on.
Every task sleeps TASK_SECONDS, so "a few task durations" has a meaning.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import aiohttp
import orjson
import redis

import testkit
from shared import BaseServiceSettings, mint_token

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import benchkit  # noqa: E402
from bench_tasks import purge, wait_done  # noqa: E402

# The run's own vhost and Redis database (benchkit.run_env): never another run's state.
VHOST = f"smartapp_bench_fairness_{os.getpid()}"
FLOOD = int(os.environ.get("BENCH_FLOOD", "1000"))
TRICKLE = 40
TRICKLE_EVERY = 0.05
TASK_SECONDS = 0.01
CONCURRENCY = 2
HTTP_CONNECTIONS = 32
P = "/smart_application/tasks"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _ts(value: bytes) -> float:
    return datetime.fromisoformat(value.decode().replace("Z", "+00:00")).timestamp()


async def ours_round(url: str, token_a: str, token_b: str, flood: int) -> tuple[list[str], list[str]]:
    body = {"steps": 1, "step_seconds": TASK_SECONDS, "data": {}}
    conn = aiohttp.TCPConnector(limit=HTTP_CONNECTIONS + 2)
    async with aiohttp.ClientSession(connector=conn) as session:
        sem = asyncio.Semaphore(HTTP_CONNECTIONS)

        async def post(token: str) -> str:
            headers = {"Authorization": f"Bearer {token}"}
            async with session.post(f"{url}{P}/long-running-task/", json=body, headers=headers) as r:
                out = await r.json()
                if r.status != 202:
                    raise RuntimeError(f"{r.status}: {out}")
                return str(out["task_id"])

        async def limited() -> str:
            async with sem:
                return await post(token_a)

        flood_job = asyncio.gather(*(limited() for _ in range(flood)))
        if flood:
            await asyncio.sleep(0.5)  # B arrives once A's backlog is there
        b_ids = []
        for _ in range(TRICKLE):
            b_ids.append(await post(token_b))
            await asyncio.sleep(TRICKLE_EVERY)
        a_ids = list(await flood_job)
    return a_ids, b_ids


def ours_waits(client: redis.Redis, ids: list[str]) -> list[float]:
    pipe = client.pipeline(transaction=False)
    for tid in ids:
        pipe.hmget(f"t:rec:{tid}", "created_at", "started_at")
    return [_ts(started) - _ts(created) for created, started in pipe.execute()]


def bare_round(flood: int) -> tuple[list[str], list[tuple[str, float]]]:
    from bare_app import sleep

    a_ids: list[str] = []

    def flood_a() -> None:
        a_ids.extend(sleep.apply_async(kwargs={"seconds": TASK_SECONDS}).id for _ in range(flood))

    flooder = threading.Thread(target=flood_a)
    flooder.start()
    if flood:
        time.sleep(0.5)
    b: list[tuple[str, float]] = []
    for _ in range(TRICKLE):
        b.append((sleep.apply_async(kwargs={"seconds": TASK_SECONDS}).id, time.time()))
        time.sleep(TRICKLE_EVERY)
    flooder.join()
    return a_ids, b


def bare_waits(client: redis.Redis, b: list[tuple[str, float]]) -> list[float]:
    out = []
    for tid, submitted in b:
        meta = orjson.loads(client.get(f"celery-task-meta-{tid}") or b"{}")
        out.append(meta["result"]["started"] - submitted)
    return out


def line(label: str, waits: list[float]) -> str:
    return f"    {label:<44}: p50 {pct(waits, 0.5) * 1000:7.0f} ms   p99 {pct(waits, 0.99) * 1000:7.0f} ms"


def main() -> list[str]:
    testkit.ensure_vhost(VHOST)
    redis_db = testkit.claim_redis_db()
    try:
        return measure(redis_db)
    finally:
        testkit.delete_vhost(VHOST)
        testkit.release_redis_db(redis_db)


def measure(redis_db: int) -> list[str]:
    env, log_dir = benchkit.run_env(VHOST, redis_db)
    settings = BaseServiceSettings()
    token_a = mint_token(settings, "noisy-a", ["tasks"], 3600)
    token_b = mint_token(settings, "quiet-b", ["tasks"], 3600)
    rclient = redis.Redis.from_url(env["REDIS_URL"])
    purge(env)
    api_port = testkit.free_port()
    url = f"http://127.0.0.1:{api_port}"
    procs: list[testkit.Proc] = []
    try:
        procs.append(testkit.start_api("task_service", api_port, {**os.environ, **env}, log_dir))
        worker = testkit.start_worker(
            "task_service.worker", "default", {**os.environ, **env}, log_dir, concurrency=CONCURRENCY
        )
        procs.append(worker)
        _, b_ids = asyncio.run(ours_round(url, token_a, token_b, 0))
        wait_done(rclient, b_ids, ours=True)
        ours_empty = ours_waits(rclient, b_ids)
        t0 = time.monotonic()
        a_ids, b_ids = asyncio.run(ours_round(url, token_a, token_b, FLOOD))
        b_done = wait_done(rclient, b_ids, ours=True) - t0
        ours_rate = (FLOOD + TRICKLE) / (wait_done(rclient, a_ids, ours=True) - t0)
        ours_flood = ours_waits(rclient, b_ids)
        worker.stop()

        bare_env = {**os.environ, **env, "PYTHONPATH": str(ROOT / "bench")}
        bare = testkit.start_worker("bare_app", "bare", bare_env, log_dir, concurrency=CONCURRENCY)
        procs.append(bare)
        _, b = bare_round(0)
        wait_done(rclient, [tid for tid, _ in b])
        bare_empty = bare_waits(rclient, b)
        t0 = time.monotonic()
        a_ids, b = bare_round(FLOOD)
        bare_rate = (FLOOD + TRICKLE) / (wait_done(rclient, [*a_ids, *(tid for tid, _ in b)]) - t0)
        bare_flood = bare_waits(rclient, b)
    finally:
        for proc in procs:
            proc.stop()
        purge(env)
        rclient.close()
    return [
        f"noisy neighbour: user A floods {FLOOD} tasks of {TASK_SECONDS * 1000:.0f} ms, user B submits "
        f"{TRICKLE}, one every {TRICKLE_EVERY * 1000:.0f} ms; concurrency {CONCURRENCY}",
        "  B's queue wait (submitted to started):",
        line("ours, empty queue", ours_empty),
        line("ours, behind A's flood (fair queues)", ours_flood),
        line("bare Celery, empty queue", bare_empty),
        line("bare Celery, behind A's flood (one FIFO)", bare_flood),
        f"    ours: B's last task done {b_done:.1f} s after the flood began",
        "  the flood end to end (A's and B's tasks), fairness on:",
        f"    bare Celery apply_async + worker : {bare_rate:8.0f} tasks/s",
        f"    task-service over HTTP + worker  : {ours_rate:8.0f} tasks/s",
        f"    ratio                            : {ours_rate / bare_rate:8.2f}x",
    ]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flood", type=int, default=FLOOD, help="user A's tasks (BENCH_FLOOD)")
    FLOOD = parser.parse_args().flood
    print("\n".join(main()))
