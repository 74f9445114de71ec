"""The page and token counters the dashboard reads move with each page and model call.

Read from the real scraping worker's metrics port, before and after: the value, not only the
name. The model is the local OpenAI-compatible server; its usage is what the counter must add.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from scrape_fakes import E2E_KEY, FakeOpenAI, PageServer

import testkit
from testkit import Stack

P = "/smart_application/tasks"
Auth = Callable[..., dict[str, str]]
PAGES = "smartapp_scrape_pages_total"
TOKENS = "smartapp_openai_tokens_total"


def _worker_metrics(stack: Stack) -> str:
    (worker,) = [p for p in stack.procs if "WORKER_METRICS_PORT" in p.env]
    return f"http://127.0.0.1:{worker.env['WORKER_METRICS_PORT']}/metrics"


def _read(url: str, model: str) -> dict[str, float]:
    return {
        "fetched": testkit.metric_value(url, PAGES, {"outcome": "fetched"}),
        "cached": testkit.metric_value(url, PAGES, {"outcome": "cached"}),
        "page_not_found": testkit.metric_value(url, PAGES, {"outcome": "page_not_found"}),
        "prompt": testkit.metric_value(url, TOKENS, {"model": model, "kind": "prompt"}),
        "completion": testkit.metric_value(url, TOKENS, {"model": model, "kind": "completion"}),
    }


async def _scrape(stack: Stack, headers: dict[str, str], url: str, model: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(
            stack.urls["scraping"] + P + "/background-scraping/",
            json={"url": url, "openai_key": E2E_KEY, "model": model},
            headers=headers,
        )
        assert r.status_code == 202, r.text
        task_id = r.json()["task_id"]
        deadline = time.monotonic() + 40
        while True:
            body: dict[str, Any] = (
                await client.get(f"{stack.urls['task']}{P}/task-status/{task_id}", headers=headers)
            ).json()
            if body["status"] in {"SUCCESS", "FAILURE", "REVOKED"}:
                return body
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.05)


async def _settles_at(url: str, model: str, expected: dict[str, float]) -> dict[str, float]:
    # The task's status is written a moment before the worker's counters are flushed.
    deadline = time.monotonic() + 10
    while (now := await asyncio.to_thread(_read, url, model)) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return now


async def test_a_page_and_a_model_call_move_their_counters(
    scraping_stack: Stack, e2e_pages: PageServer, e2e_openai: FakeOpenAI, auth: Auth
) -> None:
    metrics = _worker_metrics(scraping_stack)
    h = auth("metrics-user", "tasks scrape")
    # A model name of this test's own, so the token series start at zero here.
    model = f"gpt-4o-metrics-{uuid.uuid4().hex[:8]}"
    before = await asyncio.to_thread(_read, metrics, model)
    assert before["prompt"] == before["completion"] == 0

    page = f"{e2e_pages.base}/article?metrics={uuid.uuid4().hex}"
    done = await _scrape(scraping_stack, h, page, model)
    assert done["status"] == "SUCCESS", done
    usage = done["result"]["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    expected = {
        **before,
        "fetched": before["fetched"] + 1,
        "prompt": float(usage["prompt_tokens"]),
        "completion": float(usage["completion_tokens"]),
    }
    assert await _settles_at(metrics, model, expected) == expected

    # The same page again comes from the caches: a cached page, and no token spent.
    again = await _scrape(scraping_stack, h, page, model)
    assert again["result"]["cache"] == {"page": True, "result": True}
    expected["cached"] += 1
    assert await _settles_at(metrics, model, expected) == expected

    # A page the site does not have is counted by why it failed.
    missing = await _scrape(scraping_stack, h, f"{e2e_pages.base}/missing?m={uuid.uuid4().hex}", model)
    assert missing["status"] == "FAILURE", missing
    expected["page_not_found"] += 1
    assert await _settles_at(metrics, model, expected) == expected


def test_model_names_past_the_bound_are_counted_as_other() -> None:
    from types import SimpleNamespace

    from prometheus_client import REGISTRY

    from scraping_service import llm

    def spent(name: str, kind: str) -> float:
        return REGISTRY.get_sample_value(TOKENS, {"model": name, "kind": kind}) or 0.0

    usage = SimpleNamespace(prompt_tokens=7, completion_tokens=3)
    seen = set(llm._model_labels)
    names = [f"bound-test-{uuid.uuid4().hex[:6]}-{i}" for i in range(llm.MAX_MODEL_LABELS + 5)]
    other_before = spent("other", "prompt")
    for name in names:
        llm._count_tokens(name, usage)
    room = llm.MAX_MODEL_LABELS - len(seen)
    assert [spent(n, "prompt") for n in names[:room]] == [7.0] * room
    assert [spent(n, "prompt") for n in names[room:]] == [0.0] * (len(names) - room)
    assert spent("other", "prompt") - other_before == 7.0 * (len(names) - room)
    assert spent(names[0], "completion") == 3.0
