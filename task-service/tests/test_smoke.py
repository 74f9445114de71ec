from __future__ import annotations

import asyncio

import httpx


async def wait_status(client: httpx.AsyncClient, task_id: str, headers: dict[str, str], want: set[str], timeout: float = 20) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await client.get(f"/smart_application/tasks/task-status/{task_id}", headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] in want:
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.1)


async def test_seed_example(task_client: httpx.AsyncClient, auth) -> None:
    h = auth()
    r = await task_client.post(
        "/smart_application/tasks/background-task/",
        json={"task_type": "data_processing", "data": {"input": "sample_data"}},
        headers=h,
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "PENDING" and body["queue"] == "default"
    done = await wait_status(task_client, body["task_id"], h, {"SUCCESS", "FAILURE"})
    assert done["status"] == "SUCCESS", done
    assert done["result"]["processed"] == {"input": "sample_data"}
