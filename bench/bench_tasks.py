"""task-service against bare Celery, side by side on the same broker, result store and machine.

(a) N no-op tasks submitted over HTTP and run to SUCCESS by our worker, against the same N
    published with apply_async to a bare Celery app and run by a bare worker (same concurrency).
(b) The HTTP submission rate against a raw apply_async loop (no worker running, queues purged).

    python bench/bench_tasks.py [--tasks N] [--part a|b]

(a) runs ROUNDS rounds (3; the quick run 1), each the bare side and then ours with both
workers up and warmed, and reports the median of the rounds' ratios (each is printed too): one
run's rate swings by a tenth with the machine's other load.
(a) also prints the CPU each side spent per task (the API, and each worker's processes summed),
measured from /proc: on a shared machine the CPU per task is steadier than the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import aiohttp
import benchkit
import psutil
import redis

import testkit
from shared import TERMINAL_STATUSES, BaseServiceSettings, mint_token

ROOT = Path(__file__).resolve().parents[1]
# A vhost and (below) a Redis database of the run's own: runs, test sessions and a running
# platform never share state.
VHOST = f"smartapp_bench_tasks_{os.getpid()}"
CONCURRENCY = 2
HTTP_CONNECTIONS = 32


def cpu_seconds(proc: testkit.Proc) -> float:
    """User + system CPU of the process and its live children (a prefork pool) so far."""
    root = psutil.Process(proc.pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def wait_done(client: redis.Redis, ids: list[str], timeout: float = 300, *, ours: bool = False) -> float:
    """Seconds until every task has finished, checked in pipelined reads.

    Bare Celery's: its result exists. Ours: the record's status is final (no Celery result is
    written for a success; the record is the result store).
    """
    pending = list(ids)
    deadline = time.monotonic() + timeout
    while pending:
        pipe = client.pipeline(transaction=False)
        for tid in pending:
            if ours:
                pipe.hget(f"t:rec:{tid}", "status")
            else:
                pipe.exists(f"celery-task-meta-{tid}")
        done = [(bool(got) and got.decode() in TERMINAL_STATUSES) if ours else got for got in pipe.execute()]
        pending = [tid for tid, ok in zip(pending, done, strict=True) if not ok]
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


def main(n: int, parts: str = "ab", rounds: int = 3) -> list[str]:
    testkit.ensure_vhost(VHOST)
    redis_db = testkit.claim_redis_db()
    try:
        return measure(n, redis_db, parts, rounds)
    finally:
        testkit.delete_vhost(VHOST)
        testkit.release_redis_db(redis_db)


def measure(n: int, redis_db: int, parts: str = "ab", rounds: int = 3) -> list[str]:
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
        # The API and both workers start side by side (nothing is measured yet) and stay up
        # for every round of (a); the side not running is idle.
        api, bare_worker = benchkit.start_api_and_bare_worker(
            procs, api_port, {**os.environ, **env}, concurrency=CONCURRENCY
        )
        worker = testkit.start_worker(
            "task_service.worker", "default", {**os.environ, **env}, log_dir, concurrency=CONCURRENCY
        )
        procs.append(worker)
        # Warm both paths, workers included, so that connection set-up and a new worker's
        # first second (its fair-queue window grows once the pass has measured its rate) are
        # not measured, on either side.
        wait_done(rclient, asyncio.run(http_submit(url, token, 200)), ours=True)
        wait_done(rclient, bare_submit(200))

        if "a" in parts:
            lines += end_to_end(n, rounds, url, token, rclient, api, bare_worker, worker)
        bare_worker.stop()
        worker.stop()

        if "b" in parts:
            # (b) submission alone
            purge(env)
            t0 = time.monotonic()
            bare_submit(n)
            bare_pub = n / (time.monotonic() - t0)
            t0 = time.monotonic()
            asyncio.run(http_submit(url, token, n))
            ours_pub = n / (time.monotonic() - t0)
            purge(env)
            lines.append(f"tasks (b) submission only, {n} tasks:")
            lines.append(f"    raw apply_async loop             : {bare_pub:8.0f} tasks/s")
            lines.append(f"    HTTP POST background-task ({HTTP_CONNECTIONS} conns): {ours_pub:8.0f} tasks/s")
            lines.append(f"    ratio                            : {ours_pub / bare_pub:8.2f}x")
    finally:
        for proc in procs:
            proc.stop()
        rclient.close()
    return lines


def end_to_end(
    n: int,
    rounds: int,
    url: str,
    token: str,
    rclient: redis.Redis,
    api: testkit.Proc,
    bare_worker: testkit.Proc,
    worker: testkit.Proc,
) -> list[str]:
    """(a): rounds of (bare, then ours); the median of the rounds' ratios, and of the CPU."""
    bare_rates, our_rates, bare_cpu, our_cpu, api_cpu = [], [], [], [], []
    for _ in range(rounds):
        cpu0 = cpu_seconds(bare_worker)
        t0 = time.monotonic()
        ids = bare_submit(n)
        bare_rates.append(n / (wait_done(rclient, ids) - t0))
        bare_cpu.append((cpu_seconds(bare_worker) - cpu0) / n * 1000)

        cpu0, api0 = cpu_seconds(worker), cpu_seconds(api)
        t0 = time.monotonic()
        ids = asyncio.run(http_submit(url, token, n))
        our_rates.append(n / (wait_done(rclient, ids, ours=True) - t0))
        our_cpu.append((cpu_seconds(worker) - cpu0) / n * 1000)
        api_cpu.append((cpu_seconds(api) - api0) / n * 1000)
    ratios = [o / b for o, b in zip(our_rates, bare_rates, strict=True)]
    mid = statistics.median
    return [
        f"tasks (a) end to end, {n} no-op tasks, concurrency {CONCURRENCY}, {rounds} round(s) of"
        " (bare, ours), medians:",
        f"    bare Celery apply_async + worker : {mid(bare_rates):8.0f} tasks/s  (rounds"
        f" {', '.join(f'{r:.0f}' for r in bare_rates)})",
        f"    task-service over HTTP + worker  : {mid(our_rates):8.0f} tasks/s  (rounds"
        f" {', '.join(f'{r:.0f}' for r in our_rates)})",
        f"    ratio                            : {mid(ratios):8.2f}x  (target >= 0.5x)  rounds"
        f" {', '.join(f'{r:.2f}' for r in ratios)}",
        f"    CPU per task: bare worker {mid(bare_cpu):.2f} ms; our worker {mid(our_cpu):.2f} ms,"
        f" our API {mid(api_cpu):.2f} ms",
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=int(os.environ.get("BENCH_TASKS", "3000")))
    parser.add_argument("--part", choices=("a", "b"), help="only (a) end to end, or only (b) submission")
    parser.add_argument("--rounds", type=int, default=3, help="(a): rounds of (bare, ours); the median ratio")
    args = parser.parse_args()
    print("\n".join(main(args.tasks, args.part or "ab", args.rounds)))
