"""task-service against bare Celery, side by side on the same broker, result store and machine.

(a) N no-op tasks submitted over HTTP and run to SUCCESS by our worker, against the same N
    published with apply_async to a bare Celery app and run by a bare worker (same concurrency).
(b) The HTTP submission rate against a raw apply_async loop (no worker running, queues purged).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

import aiohttp
import benchkit
import redis

import testkit
from shared import BaseServiceSettings, mint_token

ROOT = Path(__file__).resolve().parents[1]
# The run's own vhost and (below) Redis database (benchkit.run_env).
VHOST = f"smartapp_bench_tasks_{os.getpid()}"
CONCURRENCY = 2
HTTP_CONNECTIONS = 32


def wait_done(client: redis.Redis, ids: list[str], timeout: float = 300) -> float:
    """Seconds until every id has a Celery result, checked by pipelined EXISTS."""
    pending = list(ids)
    deadline = time.monotonic() + timeout
    while pending:
        pipe = client.pipeline(transaction=False)
        for tid in pending:
            pipe.exists(f"celery-task-meta-{tid}")
        pending = [tid for tid, ok in zip(pending, pipe.execute(), strict=True) if not ok]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} tasks not done")
        if pending:
            time.sleep(0.02)
    return time.monotonic()


async def http_submit(url: str, token: str, n: int) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"}
    ids: list[str] = []
    sem = asyncio.Semaphore(HTTP_CONNECTIONS)
    conn = aiohttp.TCPConnector(limit=HTTP_CONNECTIONS)
    async with aiohttp.ClientSession(connector=conn) as session:

        async def one(i: int) -> None:
            async with (
                sem,
                session.post(
                    f"{url}/smart_application/tasks/background-task/",
                    json={"task_type": "noop", "data": {"i": i}},
                    headers=headers,
                ) as r,
            ):
                body = await r.json()
                if r.status != 202:
                    raise RuntimeError(f"{r.status}: {body}")
                ids.append(body["task_id"])

        await asyncio.gather(*(one(i) for i in range(n)))
    return ids


def bare_submit(n: int) -> list[str]:
    sys.path.insert(0, str(ROOT / "bench"))
    from bare_app import noop

    return [noop.apply_async(kwargs={"i": i}).id for i in range(n)]


def purge(env: dict[str, str]) -> None:
    from kombu import Connection

    with Connection(env["BROKER_URL"]) as conn:
        channel = conn.channel()
        for q in ("default", "bare"):
            # A queue not declared yet has nothing to purge.
            with contextlib.suppress(Exception):
                channel.queue_purge(q)


def main(n: int) -> list[str]:
    testkit.ensure_vhost(VHOST)
    redis_db = testkit.claim_redis_db()
    try:
        return measure(n, redis_db)
    finally:
        testkit.delete_vhost(VHOST)
        testkit.release_redis_db(redis_db)


def measure(n: int, redis_db: int) -> list[str]:
    env, log_dir = benchkit.run_env(VHOST, redis_db)
    settings = BaseServiceSettings()
    token = mint_token(settings, "bench", ["tasks"], 3600)
    rclient = redis.Redis.from_url(env["REDIS_URL"])
    purge(env)
    api_port = testkit.free_port()
    url = f"http://127.0.0.1:{api_port}"
    lines: list[str] = []
    procs: list[testkit.Proc] = []
    try:
        # The API and the bare worker start side by side (nothing is measured yet).
        _, bare_worker = benchkit.start_api_and_bare_worker(
            procs, api_port, {**os.environ, **env}, concurrency=CONCURRENCY
        )
        # warm both paths so connection set-up is not measured (the bare worker drains its
        # 20 before the measured run starts)
        asyncio.run(http_submit(url, token, 20))
        wait_done(rclient, bare_submit(20))
        purge(env)

        # (a) end to end
        t0 = time.monotonic()
        ids = bare_submit(n)
        bare_e2e = n / (wait_done(rclient, ids) - t0)
        bare_worker.stop()

        worker = testkit.start_worker(
            "task_service.worker", "default", {**os.environ, **env}, log_dir, concurrency=CONCURRENCY
        )
        procs.append(worker)
        t0 = time.monotonic()
        ids = asyncio.run(http_submit(url, token, n))
        ours_e2e = n / (wait_done(rclient, ids) - t0)
        worker.stop()

        # (b) submission alone
        purge(env)
        t0 = time.monotonic()
        bare_submit(n)
        bare_pub = n / (time.monotonic() - t0)
        t0 = time.monotonic()
        asyncio.run(http_submit(url, token, n))
        ours_pub = n / (time.monotonic() - t0)
        purge(env)
    finally:
        for proc in procs:
            proc.stop()
        rclient.close()
    lines.append(f"tasks (a) end to end, {n} no-op tasks, concurrency {CONCURRENCY}:")
    lines.append(f"    bare Celery apply_async + worker : {bare_e2e:8.0f} tasks/s")
    lines.append(f"    task-service over HTTP + worker  : {ours_e2e:8.0f} tasks/s")
    lines.append(f"    ratio                            : {ours_e2e / bare_e2e:8.2f}x  (target >= 0.5x)")
    lines.append(f"tasks (b) submission only, {n} tasks:")
    lines.append(f"    raw apply_async loop             : {bare_pub:8.0f} tasks/s")
    lines.append(f"    HTTP POST background-task ({HTTP_CONNECTIONS} conns): {ours_pub:8.0f} tasks/s")
    lines.append(f"    ratio                            : {ours_pub / bare_pub:8.2f}x")
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=int(os.environ.get("BENCH_TASKS", "3000")))
    print("\n".join(main(parser.parse_args().tasks)))
