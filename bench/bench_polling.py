"""End to end as curl users see it: submit through the gateway, poll task-status until SUCCESS.

USERS users (each a token with the `tasks` scope) share TASKS no-op tasks. Every user submits
its tasks through the gateway at once and polls `GET /task-status/{id}` every POLL_SECONDS for
each task it has not yet seen SUCCESS, as the seed's curl users do. Measured: wall time from
the first submit to the last SUCCESS seen, as tasks/s. Fair queues are on (they always are).

The baseline, side by side in the same run: a bare Celery app (bench/bare_app.py) with a bare
worker of the same concurrency; the same users apply_async the same tasks and poll
`AsyncResult(id).state` every POLL_SECONDS, the bare equivalent of polling.

The gateway's per-user rate limit applies to polling. A user polling 8 tasks every 0.2 s asks
for 2,400 requests a minute, twice the product default (RATE_LIMIT_PER_MINUTE=1200, burst 200),
so the section runs twice: with the product default, and with the limit raised out of the way
(`--limit` picks one). A 429 is counted and the poll simply comes again at the next tick.

Also printed, to show where the time goes: when the last submission was answered, and the
gateway's and the API's CPU per task; `--direct` adds a run straight against the API.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

import testkit
from shared import BaseServiceSettings, mint_token

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import benchkit  # noqa: E402
from bench_tasks import purge  # noqa: E402

VHOST = f"smartapp_bench_polling_{os.getpid()}"
CONCURRENCY = 2
P = "/smart_application/tasks"
DEFAULT_LIMIT = (1200, 200)  # the product default: RATE_LIMIT_PER_MINUTE, RATE_LIMIT_BURST
RAISED_LIMIT = (1_000_000, 100_000)


@dataclass
class Tally:
    polls: int = 0
    throttled: int = 0
    submitted: float = 0.0  # when the last submission was answered (monotonic)
    other: dict[int, int] = field(default_factory=dict)


def cpu_seconds(proc: testkit.Proc) -> float:
    """User + system CPU of the process so far (Linux /proc; its children are not counted)."""
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def split(n: int, users: int) -> list[int]:
    return [n // users + (1 if u < n % users else 0) for u in range(users)]


async def ours_users(url: str, tokens: list[str], n: int, poll: float) -> tuple[float, Tally]:
    tally = Tally()
    conn = aiohttp.TCPConnector(limit=0)  # curl users each have their own connections
    async with aiohttp.ClientSession(connector=conn) as session:

        async def submit(headers: dict[str, str], i: int) -> str:
            while True:
                async with session.post(
                    f"{url}{P}/background-task/",
                    json={"task_type": "noop", "data": {"i": i}},
                    headers=headers,
                ) as r:
                    body = await r.json()
                    if r.status == 429:
                        tally.throttled += 1
                        await asyncio.sleep(poll)
                        continue
                    if r.status != 202:
                        raise RuntimeError(f"submit {r.status}: {body}")
                    return str(body["task_id"])

        async def done(headers: dict[str, str], tid: str) -> bool:
            async with session.get(f"{url}{P}/task-status/{tid}", headers=headers) as r:
                body = await r.json()
                tally.polls += 1
                if r.status == 429:
                    tally.throttled += 1
                    return False
                if r.status != 200:
                    tally.other[r.status] = tally.other.get(r.status, 0) + 1
                    raise RuntimeError(f"poll {r.status}: {body}")
                if body["status"] in {"FAILURE", "REVOKED"}:
                    raise RuntimeError(f"task {tid} ended {body['status']}")
                return bool(body["status"] == "SUCCESS")

        async def user(token: str, count: int) -> None:
            # As the bare users do: submit one after another, then poll every pending task
            # each tick (the polls of one tick go out together, as parallel curls would).
            headers = {"Authorization": f"Bearer {token}"}
            pending = [await submit(headers, i) for i in range(count)]
            tally.submitted = max(tally.submitted, time.monotonic())
            while pending:
                await asyncio.sleep(poll)
                finished = await asyncio.gather(*(done(headers, tid) for tid in pending))
                pending = [tid for tid, ok in zip(pending, finished, strict=True) if not ok]

        t0 = time.monotonic()
        await asyncio.gather(*(user(t, c) for t, c in zip(tokens, split(n, len(tokens)), strict=True)))
        took = time.monotonic() - t0
        tally.submitted -= t0
        return took, tally


def bare_users(users: int, n: int, poll: float) -> tuple[float, int, float]:
    from bare_app import app, noop

    polls = [0] * users
    submitted = [0.0] * users
    start = threading.Barrier(users + 1)

    def user(u: int, count: int) -> None:
        start.wait()
        pending = [noop.apply_async(kwargs={"i": i}).id for i in range(count)]
        submitted[u] = time.monotonic()
        while pending:
            time.sleep(poll)
            polls[u] += len(pending)
            pending = [tid for tid in pending if app.AsyncResult(tid).state != "SUCCESS"]

    threads = [threading.Thread(target=user, args=(u, c)) for u, c in enumerate(split(n, users))]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    return time.monotonic() - t0, sum(polls), max(submitted) - t0


def main(n: int, users: int, poll: float, limits: list[str]) -> list[str]:
    testkit.ensure_vhost(VHOST)
    redis_db = testkit.claim_redis_db()
    try:
        return measure(n, users, poll, redis_db, limits)
    finally:
        testkit.delete_vhost(VHOST)
        testkit.release_redis_db(redis_db)


def measure(n: int, users: int, poll: float, redis_db: int, limits: list[str]) -> list[str]:
    env, log_dir = benchkit.run_env(VHOST, redis_db)
    settings = BaseServiceSettings()
    tokens = [mint_token(settings, f"poller-{u}", ["tasks"], 3600) for u in range(users)]
    purge(env)
    api_port = testkit.free_port()
    base = {**os.environ, **env}
    lines = [
        f"polling: {n} no-op tasks over {users} users, each polling every {poll:g} s, concurrency {CONCURRENCY}"
    ]
    procs: list[testkit.Proc] = []
    try:
        api, bare_worker = benchkit.start_api_and_bare_worker(procs, api_port, base, concurrency=CONCURRENCY)
        # Warm up with every user (one task each): connection set-up is not measured, on
        # either side (each side's pools then hold what 50 users need).
        bare_users(users, users, poll)
        bare_s, bare_polls, bare_sub = bare_users(users, n, poll)
        bare_worker.stop()
        bare_rate = n / bare_s
        lines.append(
            f"    bare Celery apply_async + AsyncResult polling: {bare_rate:8.1f} tasks/s"
            f"  ({bare_s:.2f} s, all submitted after {bare_sub:.2f} s, {bare_polls} polls)"
        )
        worker = testkit.start_worker(
            "task_service.worker", "default", base, log_dir, concurrency=CONCURRENCY
        )
        procs.append(worker)
        for which in limits:
            if which == "direct":
                # Diagnosis only: the same users talking to the task-service API itself.
                url = f"http://127.0.0.1:{api_port}"
                asyncio.run(ours_users(url, tokens, users, poll))  # warm up, as above
                cpu0 = cpu_seconds(api)
                ours_s, tally = asyncio.run(ours_users(url, tokens, n, poll))
                api_cpu = cpu_seconds(api) - cpu0
                rate = n / ours_s
                lines.append("    task-service API directly, no gateway (diagnosis, not the target):")
                lines.append(
                    f"        straight to the API        : {rate:8.1f} tasks/s  ({ours_s:.2f} s,"
                    f" all submitted after {tally.submitted:.2f} s)"
                )
                lines.append(f"        CPU per task: task-service API {api_cpu / n * 1000:.2f} ms")
                lines.append(f"        ratio without the gateway  : {rate / bare_rate:8.2f}x")
                continue
            per_minute, burst = DEFAULT_LIMIT if which == "default" else RAISED_LIMIT
            gw_port = testkit.free_port()
            gateway = testkit.start_api(
                "gateway",
                gw_port,
                {
                    **base,
                    "TASK_SERVICE_URL": f"http://127.0.0.1:{api_port}",
                    "RATE_LIMIT_PER_MINUTE": str(per_minute),
                    "RATE_LIMIT_BURST": str(burst),
                },
                log_dir,
            )
            try:
                url = f"http://127.0.0.1:{gw_port}"
                asyncio.run(ours_users(url, tokens, users, poll))  # warm up, as above
                cpu0 = cpu_seconds(gateway), cpu_seconds(api)
                ours_s, tally = asyncio.run(ours_users(url, tokens, n, poll))
                gw_cpu, api_cpu = cpu_seconds(gateway) - cpu0[0], cpu_seconds(api) - cpu0[1]
            finally:
                gateway.stop()
            rate = n / ours_s
            label = "product default" if which == "default" else "raised"
            lines.append(
                f"    gateway + task-status polling, rate limit {label} ({per_minute}/min, burst {burst}):"
            )
            lines.append(
                f"        through the gateway        : {rate:8.1f} tasks/s  ({ours_s:.2f} s,"
                f" all submitted after {tally.submitted:.2f} s)"
            )
            lines.append(
                f"        CPU per task: gateway {gw_cpu / n * 1000:.2f} ms,"
                f" task-service API {api_cpu / n * 1000:.2f} ms"
            )
            lines.append(
                f"        polls {tally.polls}, of them 429: {tally.throttled}"
                + (f", other: {tally.other}" if tally.other else "")
            )
            lines.append(f"        ratio                      : {rate / bare_rate:8.2f}x  (target >= 0.5x)")
    finally:
        for proc in procs:
            proc.stop()
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--limit", choices=["default", "raised", "both"], default="both")
    parser.add_argument(
        "--direct",
        action="store_true",
        help="also run the users against the API itself (where the time goes)",
    )
    args = parser.parse_args()
    chosen = ["default", "raised"] if args.limit == "both" else [args.limit]
    if args.direct:
        chosen.append("direct")
    print("\n".join(main(args.tasks, args.users, args.poll, chosen)), flush=True)
