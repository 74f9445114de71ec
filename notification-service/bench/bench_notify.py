"""Benchmark: a batch of 10,000 webhook notifications against the bare HTTP ceiling.

Starts, on loopback only: a webhook receiver (its own process), the notification API and
its Celery worker (real processes, their own Redis db and RabbitMQ vhost). Then:

1. the platform: one webhook device, POST /batch-notifications/ with N notifications;
   measures the time to the 202, and from the 202 to the last delivery at the receiver;
2. the ceiling: a bare aiohttp loop posting the same N signed bodies to the same receiver
   with as many requests in flight as the worker has (processes x NOTIFY_CONCURRENCY).

Prints deliveries per second for both and their ratio (target: at least 0.7), and the CPU
each spent per delivery (the worker's processes summed; the bare loop's own process), read
from /proc: on a shared machine the CPU per delivery is steadier than the rate.

Run: uv run python notification-service/bench/bench_notify.py [--count 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psutil
from aiohttp import web

VHOST = f"smartapp_notify_bench_{os.getpid()}"
# A fresh user per run: earlier runs' devices point at receivers that are gone.
USER = f"bench-{os.getpid()}-{int(time.time())}"
API = "/smart_application/tasks"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of the process and its live children (a prefork pool) so far."""
    root = psutil.Process(pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _receiver(port_queue: Any) -> None:
    """The webhook receiver: counts POSTs, remembers when the last one arrived."""
    import uvloop

    state = {"count": 0, "first": 0.0, "last": 0.0}

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        now = time.time()
        if not state["count"]:
            state["first"] = now
        state["count"] += 1
        state["last"] = now
        return web.Response(status=204)

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(state)

    async def reset(_: web.Request) -> web.Response:
        state.update(count=0, first=0.0, last=0.0)
        return web.json_response(state)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/hook", hook)
        app.router.add_get("/stats", stats)
        app.router.add_post("/reset", reset)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port_queue.put(runner.addresses[0][1])
        await asyncio.Event().wait()

    uvloop.run(main())


async def _wait_count(client: httpx.AsyncClient, url: str, count: int, limit_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        stats: dict[str, Any] = (await client.get(f"{url}/stats")).json()
        if stats["count"] >= count:
            return stats
        # The times measured are the receiver's own (`first`, `last`), so polling slowly costs
        # no precision; polling fast would take CPU from the platform while it runs (the
        # ceiling is only polled after its loop ended).
        await asyncio.sleep(0.1)
    raise TimeoutError(f"only {stats['count']} of {count} deliveries arrived in {limit_s}s")


async def _platform(
    base: str, receiver: str, headers: dict[str, str], count: int, worker_pid: int
) -> tuple[float, float, str, float]:
    """(seconds to the 202, seconds from it to the last delivery, the device's secret, the
    worker's CPU seconds from the POST to the last delivery)."""
    async with httpx.AsyncClient(base_url=base + API, timeout=60) as api, httpx.AsyncClient() as rc:
        r = await api.post(
            "/devices/", headers=headers, json={"channel": "webhook", "url": f"{receiver}/hook"}
        )
        r.raise_for_status()
        secret = r.json()["secret"]
        items = [
            {"user_id": USER, "title": f"bench {i}", "message": "m" * 100, "data": {"i": i}}
            for i in range(count)
        ]
        body = json.dumps({"notifications": items})
        await rc.post(f"{receiver}/reset")
        cpu_before = _cpu_seconds(worker_pid)
        started = time.time()
        r = await api.post(
            "/batch-notifications/",
            headers={**headers, "Content-Type": "application/json"},
            content=body,
        )
        accepted = time.time()
        r.raise_for_status()
        stats = await _wait_count(rc, receiver, count, 300)
        cpu = _cpu_seconds(worker_pid) - cpu_before
        return accepted - started, stats["last"] - accepted, secret, cpu


async def _ceiling(receiver: str, secret: str, count: int, concurrency: int) -> tuple[float, float]:
    """(seconds from the first send to the last delivery, this process's CPU seconds for the loop)."""
    from shared import webhooks

    bodies = [
        json.dumps(
            {
                "type": "notification.created",
                "timestamp": "2024-01-01T00:00:00.000Z",
                "data": {"notification_id": f"n{i}", "title": f"bench {i}", "message": "m" * 100},
            }
        ).encode()
        for i in range(count)
    ]
    async with httpx.AsyncClient() as rc:
        await rc.post(f"{receiver}/reset")
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for b in bodies:
            queue.put_nowait(b)

        signer = webhooks.Signer(secret)  # keyed once, as the worker keys one per device

        async def worker() -> None:
            while not queue.empty():
                b = queue.get_nowait()
                headers = webhooks.signed_headers(signer, "msg_" + secrets.token_urlsafe(18), b)
                headers["Content-Type"] = "application/json"
                async with session.post(f"{receiver}/hook", data=b, headers=headers) as resp:
                    await resp.read()

        started = time.time()
        cpu_before = time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu = time.process_time() - cpu_before
    async with httpx.AsyncClient() as rc:
        stats = await _wait_count(rc, receiver, count, 60)
    return float(stats["last"]) - started, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=2, help="worker pool processes")
    parser.add_argument("--concurrency", type=int, default=64, help="in flight per process")
    args = parser.parse_args()

    import testkit

    # A Redis database of the run's own, claimed (and emptied) like a test session's, so
    # nothing an earlier run left behind changes what is measured, and runs, test sessions
    # and a running platform never share state.
    redis_db = testkit.claim_redis_db()
    try:
        return measure(args, redis_db)
    finally:
        testkit.release_redis_db(redis_db)


def measure(args: argparse.Namespace, redis_db: int) -> int:
    import testkit

    env = testkit.test_env(
        {
            "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
            "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{VHOST}",
            "OUTBOUND_ALLOWLIST": "127.0.0.1",
            "NOTIFY_CONCURRENCY": str(args.concurrency),
            # Throwaway records: an hour, not the default week, so runs do not pile up in Redis.
            "NOTIFY_RETENTION_SECONDS": "3600",
            "VAPID_SUBJECT": "mailto:bench@example.com",
            # Pacing is per destination host, and this bench's receiver is one host: a pace
            # far above what one machine can send measures the pacer's cost (one Redis call
            # per lease of 4 x NOTIFY_CONCURRENCY slots) without capping the run. The default,
            # 50 a second, would make 10,000 deliveries take 200 s by design.
            "NOTIFY_MAX_PER_HOST_PER_SECOND": "1000000",
        }
    )
    os.environ.update(env)
    from shared import BaseServiceSettings, mint_token

    headers = {"Authorization": "Bearer " + mint_token(BaseServiceSettings(), USER, ["notify:send"], 3600)}
    testkit.ensure_vhost(VHOST)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    ports: Any = multiprocessing.Queue()
    receiver_proc = multiprocessing.Process(target=_receiver, args=(ports,), daemon=True)
    receiver_proc.start()
    receiver = f"http://127.0.0.1:{ports.get(timeout=10)}"
    procs: list[testkit.Proc] = []
    try:
        port = testkit.free_port()
        # The API and the worker start side by side.
        with ThreadPoolExecutor(2) as pool:
            starts = [
                pool.submit(testkit.start_api, "notification_service", port, env, log_dir),
                pool.submit(
                    testkit.start_worker,
                    "notification_service.worker",
                    "notifications",
                    env,
                    log_dir,
                    concurrency=args.processes,
                ),
            ]
        procs.extend(f.result() for f in starts if f.exception() is None)
        for f in starts:
            if (error := f.exception()) is not None:
                raise error
        base = f"http://127.0.0.1:{port}"
        worker_pid = starts[1].result().pid
        accept_s, deliver_s, secret, worker_cpu = asyncio.run(
            _platform(base, receiver, headers, args.count, worker_pid)
        )
        in_flight = args.processes * args.concurrency
        ceiling_s, ceiling_cpu = asyncio.run(_ceiling(receiver, secret, args.count, in_flight))
    finally:
        for proc in reversed(procs):
            proc.stop()
        receiver_proc.terminate()
        subprocess.run(  # noqa: S603
            ["rabbitmqctl", "-q", "delete_vhost", VHOST],  # noqa: S607
            check=False,
            capture_output=True,
        )
    platform_rate = args.count / deliver_s
    ceiling_rate = args.count / ceiling_s
    ratio = platform_rate / ceiling_rate
    print(f"notifications: {args.count} webhook deliveries, {in_flight} in flight")
    pace = env["NOTIFY_MAX_PER_HOST_PER_SECOND"]
    print(f"  pace per host: {pace}/s, set above what one machine sends (the receiver is one host)")
    print(f"  batch accepted (202) in         {accept_s * 1000:8.0f} ms")
    print(f"  202 -> last delivery            {deliver_s * 1000:8.0f} ms")
    print(f"  platform                        {platform_rate:8.0f} deliveries/s")
    print(f"  bare aiohttp loop (ceiling)     {ceiling_rate:8.0f} deliveries/s")
    print(f"  ratio                           {ratio:8.2f}x (target >= 0.70)")
    per = 1e6 / args.count
    print(
        f"  CPU per delivery: worker {worker_cpu * per:.0f} us (all its processes,"
        f" planning included); bare loop {ceiling_cpu * per:.0f} us"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
