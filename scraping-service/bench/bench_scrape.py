"""Scraping throughput: tasks/s through the real API and worker vs a bare asyncio fetch loop.

Everything runs on loopback: a local page server with N distinct article pages, a local
OpenAI-compatible server answering at once, scraping-service's API and Celery worker as real
processes (its own Redis db and RabbitMQ vhost, so a running platform is untouched).

Reported:
- scrape tasks/s: submit N tasks through POST /background-scraping/ and wait until every
  task record is final (SUCCESS), with the worker as configured (concurrency 2 by default);
- bare fetch pages/s: one asyncio loop with httpx fetching the same N pages, 16 at a time:
  the I/O ceiling of this machine for these pages;
- extraction ms/page on the article page;
- the ratio of the first to the second.

Per-host politeness is set high (SCRAPE_HOST_RATE) because every page lives on 127.0.0.1:
with the default 1 request/s per host the benchmark would measure the politeness, not the
pipeline.

Run: uv run python scraping-service/bench/bench_scrape.py [--tasks 200] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "tests"))

import scrape_pages as pages  # noqa: E402
from scrape_fakes import FakeOpenAI, PageServer  # noqa: E402

import testkit  # noqa: E402

BENCH_VHOST = f"smartapp_bench_{os.getpid()}"
KEY = f"sk-bench-{uuid.uuid4().hex}"
P = "/smart_application/tasks"


def bench_env(page_port: int, openai: FakeOpenAI, redis_db: int) -> dict[str, str]:
    env = testkit.test_env(
        {
            "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
            "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{BENCH_VHOST}",
            "OPENAI_BASE_URL": openai.base_url,
            "OUTBOUND_ALLOWLIST": f"127.0.0.1:{page_port}",
            "SCRAPE_HOST_RATE": "1000",
            "SCRAPE_HOST_BURST": "500",
        }
    )
    return {**os.environ, **env}


def extraction_ms(rounds: int = 200) -> float:
    from scraping_service.extract import extract

    html = pages.article_page().encode()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        extract(html, "text/html; charset=utf-8", "https://news.example.com/a")
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def bare_fetch(urls: list[str], concurrency: int = 16) -> float:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=10) as client:

        async def one(url: str) -> None:
            async with sem:
                r = await client.get(url)
                r.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(one(u) for u in urls))
        return len(urls) / (time.perf_counter() - t0)


async def run_tasks(api: str, urls: list[str], token: str, redis_url: str) -> tuple[float, int]:
    headers = {"Authorization": f"Bearer {token}"}
    records = redis.Redis.from_url(redis_url)
    sem = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:

        async def submit(url: str) -> str:
            async with sem:
                r = await client.post(
                    f"{P}/background-scraping/",
                    json={"url": url, "openai_key": KEY, "model": "gpt-4o", "max_age": 0},
                    headers=headers,
                )
                r.raise_for_status()
                return str(r.json()["task_id"])

        t0 = time.perf_counter()
        ids = await asyncio.gather(*(submit(u) for u in urls))
        pending = set(ids)
        failed = 0
        deadline = time.monotonic() + 300
        while pending and time.monotonic() < deadline:
            pipe = records.pipeline()
            ordered = list(pending)
            for tid in ordered:
                pipe.hget(f"t:rec:{tid}", "status")
            for tid, status in zip(ordered, pipe.execute(), strict=True):
                if status in (b"SUCCESS", b"FAILURE", b"REVOKED"):
                    pending.discard(tid)
                    if status != b"SUCCESS":
                        failed += 1
                        print("failed:", records.hget(f"t:rec:{tid}", "error"), file=sys.stderr)
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - t0
    records.close()
    if pending:
        raise SystemExit(f"{len(pending)} tasks did not finish in time")
    return len(urls) / elapsed, failed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    # No Crawl-delay here: it would cap one host at a few pages a second, by design.
    page_server = await PageServer(robots="User-agent: *\nDisallow: /private\n").start()
    openai = await FakeOpenAI(api_key=KEY).start()
    # A Redis database and a vhost of its own, claimed like a test session's, so a running
    # platform or test session is never touched.
    redis_db = testkit.claim_redis_db()
    env = bench_env(page_server.port, openai, redis_db)
    testkit.ensure_vhost(BENCH_VHOST)
    redis_url = env["REDIS_URL"]
    log_dir = Path(tempfile.mkdtemp(prefix="bench-scrape-"))
    procs: list[testkit.Proc] = []
    loop = asyncio.get_running_loop()
    try:
        port = testkit.free_port()
        # Starting processes blocks; keep the local servers answering meanwhile, and start
        # the API and the worker side by side.
        started = await asyncio.gather(
            loop.run_in_executor(None, lambda: testkit.start_api("scraping_service", port, env, log_dir)),
            loop.run_in_executor(
                None,
                lambda: testkit.start_worker(
                    "scraping_service.worker", "scraping", env, log_dir, concurrency=args.concurrency
                ),
            ),
            return_exceptions=True,
        )
        procs.extend(p for p in started if isinstance(p, testkit.Proc))
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        from shared import BaseServiceSettings, mint_token

        os.environ.update({k: env[k] for k in ("JWT_SECRET", "ENVIRONMENT")})
        token = mint_token(BaseServiceSettings(), "bench", ["tasks", "scrape"], 3600)
        api = f"http://127.0.0.1:{port}"

        # Warm-up: robots.txt, imports, connections.
        await run_tasks(api, [f"{page_server.base}/page/warm{i}" for i in range(4)], token, redis_url)

        run = uuid.uuid4().hex[:6]
        urls = [f"{page_server.base}/page/{run}-{i}" for i in range(args.tasks)]
        bare = await bare_fetch([u + "?bare=1" for u in urls])
        tasks_per_s, failed = await run_tasks(api, urls, token, redis_url)
        ms = extraction_ms()
        ratio = tasks_per_s / bare
        print(f"scrape tasks/s (worker concurrency {args.concurrency}): {tasks_per_s:8.1f}")
        print(f"bare asyncio fetch pages/s (16 in flight):      {bare:8.1f}")
        print(f"extraction ms/page (article, median):            {ms:8.2f}")
        print(f"ratio scrape/bare:                               {ratio:8.3f}")
        print(
            json.dumps(
                {
                    "bench": "scraping",
                    "tasks": args.tasks,
                    "failed": failed,
                    "worker_concurrency": args.concurrency,
                    "scrape_tasks_per_s": round(tasks_per_s, 1),
                    "bare_fetch_pages_per_s": round(bare, 1),
                    "extraction_ms_per_page": round(ms, 3),
                    "ratio": round(ratio, 4),
                    "model_calls": len(openai.requests),
                }
            )
        )
        if failed:
            raise SystemExit(f"{failed} scrape tasks failed; see {log_dir}")
    finally:
        for proc in reversed(procs):
            proc.stop()
        await openai.stop()
        await page_server.stop()
        testkit.delete_vhost(BENCH_VHOST)
        testkit.release_redis_db(redis_db)


if __name__ == "__main__":
    asyncio.run(main())
