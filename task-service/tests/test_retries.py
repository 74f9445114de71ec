"""sleep and fail task types, retry policies and time limits, against a real worker."""

from __future__ import annotations

import httpx

P = "/smart_application/tasks"


async def submit(client: httpx.AsyncClient, headers: dict, **body) -> str:
    r = await client.post(f"{P}/background-task/", json=body, headers=headers)
    assert r.status_code == 202, r.text
    return str(r.json()["task_id"])


async def test_sleep_returns_and_fail_fails_with_its_message(task_client, auth, wait) -> None:
    h = auth("retry-kinds")
    slept = await submit(task_client, h, task_type="sleep", data={"seconds": 0.2})
    failed = await submit(task_client, h, task_type="fail", data={"message": "boom"})
    done = await wait(task_client, slept, h, {"SUCCESS", "FAILURE"})
    assert done["status"] == "SUCCESS" and done["result"] == {"slept_seconds": 0.2}
    bad = await wait(task_client, failed, h, {"SUCCESS", "FAILURE"})
    assert bad["status"] == "FAILURE"
    assert bad["error"] == {"type": "FailedOnPurpose", "message": "boom"}
    r = await task_client.post(
        f"{P}/background-task/", json={"task_type": "sleep", "data": {"seconds": 3601}}, headers=h
    )
    assert r.status_code == 422
