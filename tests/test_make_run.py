"""The platform as `make run` starts it: the seed's curl examples through the gateway on :8000."""

from __future__ import annotations

import asyncio

import httpx

from testkit import sample_value

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
        assert (await client.get("http://127.0.0.1:8000/metrics")).status_code == 404
        gateway_metrics = (await client.get("http://127.0.0.1:9100/metrics")).text
        assert sample_value(gateway_metrics, "smartapp_http_requests_total") > 0
        for port in (8001, 8002, 8003):
            # Each read of /metrics is itself counted: the next read shows one more.
            url = f"http://127.0.0.1:{port}/metrics"
            labels = {"route": "/metrics", "status": "200"}
            first = sample_value((await client.get(url)).text, "smartapp_http_requests_total", labels)
            second = sample_value((await client.get(url)).text, "smartapp_http_requests_total", labels)
            assert second == first + 1, (port, first, second)
        for port, queue in ((9101, "default"), (9102, "scraping"), (9103, "notifications")):
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert f'smartapp_queue_depth{{queue="{queue}"}}' in text, text[:2000]
            # The broker answered, and this worker is its queue's one consumer.
            assert sample_value(text, "smartapp_broker_up") == 1, port
            assert sample_value(text, "smartapp_queue_consumers", {"queue": queue}) == 1, port
