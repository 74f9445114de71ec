from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

P = "/smart_application/tasks"


async def wait_status(
    client: httpx.AsyncClient,
    task_id: str,
    headers: dict[str, str],
    want: set[str],
    timeout: float = 30,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        r = await client.get(f"{P}/task-status/{task_id}", headers=headers)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["status"] in want:
            return body
        assert loop.time() < deadline, f"still {body['status']} after {timeout}s: {body}"
        await asyncio.sleep(0.05)


@pytest.fixture
def wait():
    return wait_status
