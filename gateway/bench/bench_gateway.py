"""The gateway against task-service directly and against a bare pass-through proxy.

One authenticated GET of a cache key, driven by wrk at 32 connections, against:
  (a) the gateway (auth, rate limiting and metrics all on; the limit set high enough not to refuse),
  (b) task-service directly,
  (c) a bare proxy written here: FastAPI plus one pooled aiohttp session, nothing else.
Each is one uvicorn process with uvloop and httptools. Targets are run in turn, `--rounds`
times, and the best round of each is reported (the machine is shared with wrk and Redis, so
the best round is the least disturbed one). Target: gateway >= 0.8x the bare proxy.

    uv run python gateway/bench/bench_gateway.py [--duration 8] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import httpx
import uvicorn
from fastapi import FastAPI, Request, Response

import testkit
from shared import BaseServiceSettings, mint_token

API = "/smart_application/tasks"
CONNECTIONS = 32
TARGET_RATIO = 0.8
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}


# ---------------------------------------------------------------------------------------------
# (c) The reference: a bare pass-through proxy, run in a subprocess of this script.
# ---------------------------------------------------------------------------------------------
def serve_bare(port: int, upstream: str) -> None:
    state: dict[str, aiohttp.ClientSession] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        yield
        await state["session"].close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def proxy(request: Request, path: str) -> Response:
        url = upstream + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        headers = {k: v for k, v in request.headers.items() if k not in ("host", "content-length")}
        body = await request.body()
        async with state["session"].request(request.method, url, headers=headers, data=body or None) as r:
            data = await r.read()
            out = {k: v for k, v in r.headers.items() if k.lower() not in HOP_BY_HOP}
            return Response(data, status_code=r.status, headers=out)

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


# ---------------------------------------------------------------------------------------------
# Running wrk and reading its report.
# ---------------------------------------------------------------------------------------------
@dataclass
class Result:
    target: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    # CPU the serving process spent per request: steadier than req/s on a busy machine.
    cpu_us_per_request: float = 0.0
    error_lines: str = ""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(name: str, url: str, token: str, duration: int, threads: int, pid: int | None = None) -> Result:
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{CONNECTIONS}",
        f"-d{duration}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {token}",
        url,
    ]
    cpu_before = cpu_seconds(pid) if pid else 0.0
    # The command is fixed here; only our own URL and token vary.
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 60).stdout  # noqa: S603
    cpu = cpu_seconds(pid) - cpu_before if pid else 0.0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(int(g) for g in sock.groups()) if sock else 0)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    lines = "\n".join(line for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line)
    return Result(name, rps, p50, p99, errors, cpu / max(total, 1) * 1e6, lines)


def check(url: str, token: str) -> None:
    r = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    if r.status_code != 200 or r.json().get("value") != {"bench": True}:
        raise SystemExit(f"{url} answered {r.status_code}: {r.text[:300]}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per target; the best is kept")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of wrk per target first")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: CPUs are scarce)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare, args.upstream)
        return 0

    if shutil.which("wrk") is None:
        print(
            "bench_gateway: `wrk` is not installed. Install it with `apt-get install -y wrk` "
            "(`make bench` does this for you), then run again.",
            file=sys.stderr,
        )
        return 2

    # A vhost and a Redis database of the run's own: runs, test sessions and a running
    # platform never share state.
    vhost = f"smartapp_bench_gateway_{os.getpid()}"
    testkit.ensure_vhost(vhost)
    redis_db = testkit.claim_redis_db()
    try:
        return measure(args, vhost, redis_db)
    finally:
        testkit.delete_vhost(vhost)
        testkit.release_redis_db(redis_db)


def measure(args: argparse.Namespace, vhost: str, redis_db: int) -> int:
    env = testkit.test_env(
        {
            "JWT_SECRET": secrets.token_urlsafe(32),
            "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
            "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
            "LOG_LEVEL": "WARNING",
            "WEB_CONCURRENCY": "1",
        }
    )
    os.environ.update(env)
    token = mint_token(BaseServiceSettings(), f"bench-{secrets.token_hex(4)}", ["tasks", "cache"], 3600)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    stack = testkit.Stack(env, log_dir)
    try:
        task_url = stack.api("task_service", "task")
        # The bare proxy starts while the gateway does (it is waited for after).
        bare_port = testkit.free_port()
        bare = testkit.Proc(
            "bare-proxy",
            [sys.executable, __file__, "--serve-bare", str(bare_port), "--upstream", task_url],
            env,
            log_dir / "bare-proxy.log",
        ).start()
        try:
            gateway_url = stack.api(
                "gateway",
                "gateway",
                {
                    "TASK_SERVICE_URL": task_url,
                    # On, and high enough never to refuse: the cost is measured, not the refusals.
                    "RATE_LIMIT_ENABLED": "true",
                    "RATE_LIMIT_PER_MINUTE": "1000000000",
                    "RATE_LIMIT_BURST": "1000000000",
                },
            )
        finally:
            stack.procs.append(bare)  # after the gateway: the order names the pids below
        bare.wait_http(f"http://127.0.0.1:{bare_port}/health")
        bare_url = f"http://127.0.0.1:{bare_port}"

        key = f"{API}/cache/bench-key"
        put = httpx.put(
            task_url + key,
            json={"value": {"bench": True}, "ttl": 3600},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        put.raise_for_status()
        pids = {name: proc.pid for name, proc in zip(("task", "gateway", "bare"), stack.procs, strict=True)}
        targets = {
            "task-service direct": (task_url + key, pids["task"]),
            "bare proxy (FastAPI + aiohttp)": (bare_url + key, pids["bare"]),
            "gateway (auth, rate limit, metrics)": (gateway_url + key, pids["gateway"]),
        }
        for url, _ in targets.values():
            check(url, token)
            if args.warmup > 0:
                run_wrk("warm-up", url, token, args.warmup, args.threads)

        best: dict[str, Result] = {}
        for _ in range(args.rounds):
            for name, (url, pid) in targets.items():
                result = run_wrk(name, url, token, args.duration, args.threads, pid)
                if name not in best or result.requests_per_second > best[name].requests_per_second:
                    best[name] = result
                time.sleep(0.5)
    finally:
        stack.stop()

    direct, bare_r, gw = (best[n] for n in targets)
    print(
        f"\nGateway benchmark: GET {key}, wrk -t{args.threads} -c{CONNECTIONS} -d{args.duration}s, "
        f"best of {args.rounds}, {os.cpu_count()} CPUs (shared with wrk, Redis and the upstream)"
    )
    print(f"{'target':<38}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}{'errors':>8}")
    for r in (direct, bare_r, gw):
        print(
            f"{r.target:<38}{r.requests_per_second:>9.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
            f"{r.cpu_us_per_request:>12.0f}{r.errors:>8}"
        )
    ratio = gw.requests_per_second / bare_r.requests_per_second
    print(
        f"\ngateway / bare proxy    = {ratio:.2f}x  (target >= {TARGET_RATIO}x: "
        f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})"
    )
    print(f"gateway / direct        = {gw.requests_per_second / direct.requests_per_second:.2f}x")
    print(f"bare proxy / direct     = {bare_r.requests_per_second / direct.requests_per_second:.2f}x")
    print(
        f"CPU per request, gateway / bare proxy = "
        f"{gw.cpu_us_per_request / max(bare_r.cpu_us_per_request, 1e-9):.2f}x (lower is better)"
    )
    for r in (direct, bare_r, gw):
        if r.errors:
            print(f"warning: {r.target}: {r.error_lines}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"results": [asdict(r) for r in (direct, bare_r, gw)], "gateway_vs_bare": ratio}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
