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

The machine's other load swings both sides' rates by a tenth or more from one run to the next,
so the section runs ROUNDS rounds (3; the quick run 1), each the baseline and then ours, and
reports the median of the rounds' ratios (each round's is printed too). Both workers and every
gateway stay up for all rounds; the side not running is idle.

Also printed, to show where the time goes: when the last submission was answered, and the
gateway's and the API's CPU per task; `--direct` adds a run straight against the API.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
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


def main(n: int, users: int, poll: float, limits: list[str], rounds: int) -> list[str]:
    testkit.ensure_vhost(VHOST)
    redis_db = testkit.claim_redis_db()
    try:
        return measure(n, users, poll, redis_db, limits, rounds)
    finally:
        testkit.delete_vhost(VHOST)
        testkit.release_redis_db(redis_db)


@dataclass
class Run:
    """One measured run of one side: tasks/s, and what it cost."""

    rate: float
    took: float
    submitted: float
    tally: Tally | None = None
    cpu: tuple[float, float] = (0.0, 0.0)  # gateway, API: CPU seconds per task


def measure(n: int, users: int, poll: float, redis_db: int, limits: list[str], rounds: int) -> list[str]:
    env, log_dir = benchkit.run_env(VHOST, redis_db)
    settings = BaseServiceSettings()
    tokens = [mint_token(settings, f"poller-{u}", ["tasks"], 3600) for u in range(users)]
    purge(env)
    api_port = testkit.free_port()
    base = {**os.environ, **env}
    lines = [
        f"polling: {n} no-op tasks over {users} users, each polling every {poll:g} s, concurrency {CONCURRENCY};"
        f" {rounds} round(s), each runs the baseline and then ours, and the ratio is the median of the"
        " rounds' ratios"
    ]
    procs: list[testkit.Proc] = []
    try:
        api, _ = benchkit.start_api_and_bare_worker(procs, api_port, base, concurrency=CONCURRENCY)
        # Both workers stay up for every round (an idle one costs nothing measurable), so the
        # rounds can alternate the sides: drift in the machine's load falls on both alike.
        procs.append(
            testkit.start_worker("task_service.worker", "default", base, log_dir, concurrency=CONCURRENCY)
        )
        urls: dict[str, str] = {}
        gateways: dict[str, testkit.Proc] = {}
        for which in limits:
            if which != "direct":
                gw_port = testkit.free_port()
                gateways[which] = start_gateway(which, base, api_port, gw_port, log_dir)
                procs.append(gateways[which])
                urls[which] = f"http://127.0.0.1:{gw_port}"
        if "direct" in limits:
            urls["direct"] = f"http://127.0.0.1:{api_port}"
        # Warm up with every user (one task each): connection set-up is not measured, on
        # either side (each side's pools then hold what 50 users need).
        bare_users(users, users, poll)
        for url in urls.values():
            asyncio.run(ours_users(url, tokens, users, poll))
        bare: list[Run] = []
        ours: dict[str, list[Run]] = {which: [] for which in limits}
        for _ in range(rounds):
            took, polls, sub = bare_users(users, n, poll)
            bare.append(Run(n / took, took, sub, Tally(polls=polls)))
            for which in limits:
                ours[which].append(run_ours(urls[which], tokens, n, poll, gateways.get(which), api))
        lines += report(bare, ours, n)
    finally:
        for proc in procs:
            proc.stop()
    return lines


def start_gateway(which: str, base: dict[str, str], api_port: int, port: int, log_dir: Path) -> testkit.Proc:
    per_minute, burst = DEFAULT_LIMIT if which == "default" else RAISED_LIMIT
    env = {
        **base,
        "TASK_SERVICE_URL": f"http://127.0.0.1:{api_port}",
        "RATE_LIMIT_PER_MINUTE": str(per_minute),
        "RATE_LIMIT_BURST": str(burst),
    }
    return testkit.start_api("gateway", port, env, log_dir)


def run_ours(
    url: str, tokens: list[str], n: int, poll: float, gateway: testkit.Proc | None, api: testkit.Proc
) -> Run:
    cpu0 = (cpu_seconds(gateway) if gateway else 0.0), cpu_seconds(api)
    took, tally = asyncio.run(ours_users(url, tokens, n, poll))
    cpu = (cpu_seconds(gateway) - cpu0[0] if gateway else 0.0), cpu_seconds(api) - cpu0[1]
    return Run(n / took, took, tally.submitted, tally, (cpu[0] / n, cpu[1] / n))


def report(bare: list[Run], ours: dict[str, list[Run]], n: int) -> list[str]:
    mid = statistics.median
    lines = [
        f"    bare Celery apply_async + AsyncResult polling: {mid(r.rate for r in bare):8.1f} tasks/s"
        f"  (median; rounds {', '.join(f'{r.rate:.0f}' for r in bare)};"
        f" all submitted after {mid(r.submitted for r in bare):.2f} s)"
    ]
    for which, runs in ours.items():
        ratios = [run.rate / b.rate for run, b in zip(runs, bare, strict=True)]
        tallies = [run.tally for run in runs if run.tally is not None]
        polls, throttled = sum(t.polls for t in tallies), sum(t.throttled for t in tallies)
        other: dict[int, int] = {}
        for t in tallies:
            for code, count in t.other.items():
                other[code] = other.get(code, 0) + count
        if which == "direct":
            lines.append("    task-service API directly, no gateway (diagnosis, not the target):")
        else:
            per_minute, burst = DEFAULT_LIMIT if which == "default" else RAISED_LIMIT
            label = "product default" if which == "default" else "raised"
            lines.append(
                f"    gateway + task-status polling, rate limit {label} ({per_minute}/min, burst {burst}):"
            )
        lines.append(
            f"        {'straight to the API' if which == 'direct' else 'through the gateway'}"
            f"        : {mid(r.rate for r in runs):8.1f} tasks/s  (median; rounds"
            f" {', '.join(f'{r.rate:.0f}' for r in runs)}; all submitted after {mid(r.submitted for r in runs):.2f} s)"
        )
        lines.append(
            f"        CPU per task: gateway {mid(r.cpu[0] for r in runs) * 1000:.2f} ms,"
            f" task-service API {mid(r.cpu[1] for r in runs) * 1000:.2f} ms"
        )
        lines.append(
            f"        polls {polls}, of them 429: {throttled}" + (f", other: {other}" if other else "")
        )
        target = "  (diagnosis)" if which == "direct" else "  (target >= 0.5x)"
        lines.append(
            f"        ratio                      : {mid(ratios):8.2f}x{target}"
            f"  rounds {', '.join(f'{x:.2f}' for x in ratios)}"
        )
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--limit", choices=["default", "raised", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (baseline, ours); the median ratio")
    parser.add_argument(
        "--direct",
        action="store_true",
        help="also run the users against the API itself (where the time goes)",
    )
    args = parser.parse_args()
    chosen = ["default", "raised"] if args.limit == "both" else [args.limit]
    if args.direct:
        chosen.append("direct")
    print("\n".join(main(args.tasks, args.users, args.poll, chosen, args.rounds)), flush=True)
