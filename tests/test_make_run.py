"""The platform as `make run` starts it: the seed's curl examples through the gateway on :8000."""

from __future__ import annotations

import asyncio

import httpx

GW = "http://127.0.0.1:8000"
P = "/smart_application/tasks"


async def test_seed_examples_through_the_gateway(local_stack, auth) -> None:
    h = auth("user123", "tasks cache")
    async with httpx.AsyncClient(base_url=GW, timeout=30) as client:
        r = await client.post(
            f"{P}/background-task/",
            json={"task_type": "data_processing", "data": {"input": "sample_data"}},
            headers=h,
        )
        assert r.status_code == 202, r.text
        task_id = r.json()["task_id"]
        for _ in range(200):
            status = (await client.get(f"{P}/task-status/{task_id}", headers=h)).json()
            if status["status"] == "SUCCESS":
                break
            await asyncio.sleep(0.05)
        assert status["status"] == "SUCCESS", status
        assert status["result"]["processed"] == {"input": "sample_data"}
        assert (await client.put(f"{P}/cache/k", json={"value": [1]}, headers=h)).status_code == 200
        assert (await client.get(f"{P}/cache/k", headers=h)).json()["value"] == [1]
        ready = await client.get("/ready")
        assert ready.status_code == 200, ready.text


async def test_every_process_serves_metrics(local_stack) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for port in (8000, 8001, 8002, 8003):
            assert (
                "smartapp_http_requests_total" in (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            )
        for port, queue in ((9101, "default"), (9102, "scraping"), (9103, "notifications")):
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert f'smartapp_queue_depth{{queue="{queue}"}}' in text, text[:2000]
