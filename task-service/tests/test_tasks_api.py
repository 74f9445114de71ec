"""task-service over HTTP against a real worker, Redis and RabbitMQ."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import jwt
import orjson
import pytest
import redis

from testkit import sample_value

P = "/smart_application/tasks"


def assert_envelope(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"code", "message", "request_id"}
    assert err["message"] and err["request_id"]
    if code:
        assert err["code"] == code, err
    return err


async def submit(client: httpx.AsyncClient, headers: dict, path: str = "/background-task/", **body) -> dict:
    r = await client.post(P + path, json=body, headers=headers)
    assert r.status_code == 202, r.text
    return r.json()


# --- the seed's examples ----------------------------------------------------------------------


async def test_seed_background_task_and_status(task_client, auth, wait) -> None:
    h = auth()
    body = await submit(task_client, h, task_type="data_processing", data={"input": "sample_data"})
    assert body["status"] == "PENDING"
    assert body["task_type"] == "data_processing" and body["queue"] == "default"
    assert body["links"]["status"] == f"{P}/task-status/{body['task_id']}"
    done = await wait(task_client, body["task_id"], h, {"SUCCESS", "FAILURE"})
    assert done["status"] == "SUCCESS", done
    assert done["result"]["processed"] == {"input": "sample_data"}
    assert done["result"]["stats"]["input"]["length"] == len("sample_data")
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]
    assert done["error"] is None


@pytest.mark.parametrize(
    ("task_type", "data", "check"),
    [
        (
            "data_processing",
            {"name": "  Hello   World ", "values": [1, 2, 3, 4], "rows": [{"a": 2}, {"a": 1}, {"a": 2}]},
            lambda r: (
                r["processed"]["name"] == "Hello World"
                and r["stats"]["values"]["mean"] == 2.5
                and r["stats"]["rows"]["duplicates_removed"] == 1
            ),
        ),
        (
            "text_analysis",
            {"text": "The cat sat. The cat ran! A dog?", "top": 2},
            lambda r: (
                r["words"] == 8 and r["sentences"] == 3 and r["top_terms"][0] == {"term": "cat", "count": 2}
            ),
        ),
        (
            "aggregate",
            {
                "records": [{"k": "a", "v": 1}, {"k": "a", "v": 3}, {"k": "b", "v": 10}],
                "group_by": "k",
                "metrics": {"v": ["sum", "avg"]},
            },
            lambda r: (
                r["groups"]
                == [
                    {"k": "a", "count": 2, "v_sum": 4.0, "v_avg": 2.0},
                    {"k": "b", "count": 1, "v_sum": 10.0, "v_avg": 10.0},
                ]
            ),
        ),
    ],
)
async def test_task_types_do_real_work(task_client, auth, wait, task_type, data, check) -> None:
    h = auth()
    body = await submit(task_client, h, task_type=task_type, data=data)
    done = await wait(task_client, body["task_id"], h, {"SUCCESS", "FAILURE"})
    assert done["status"] == "SUCCESS", done
    assert check(done["result"]), done["result"]


async def test_failure_reports_error(task_client, auth, wait) -> None:
    h = auth()
    body = await submit(
        task_client, h, task_type="data_processing", data={"x": "y", "operations": ["explode"]}
    )
    done = await wait(task_client, body["task_id"], h, {"SUCCESS", "FAILURE"})
    assert done["status"] == "FAILURE"
    assert done["error"]["type"] == "PublicTaskError"
    assert "explode" in done["error"]["message"]
    assert done["result"] is None


# --- validation and errors ----------------------------------------------------------------------


async def test_unknown_task_type_names_known(task_client, auth) -> None:
    r = await task_client.post(
        f"{P}/background-task/", json={"task_type": "mine_bitcoin", "data": {}}, headers=auth()
    )
    err = assert_envelope(r, 422, "unknown_task_type")
    for known in ("data_processing", "text_analysis", "aggregate"):
        assert known in err["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"steps": 0},
        {"steps": 10_001},
        {"steps": 1, "step_seconds": -1},
        {"steps": 1, "step_seconds": 61},
        {"steps": "many"},
        {"steps": 2, "priority": 10},
        {"steps": 2, "countdown": 901},
        {"steps": 2, "callback_url": "ftp://example.com/x"},
        {"steps": 2, "surprise": True},
    ],
)
async def test_long_running_validation(task_client, auth, body) -> None:
    r = await task_client.post(f"{P}/long-running-task/", json=body, headers=auth())
    assert_envelope(r, 422)


async def test_bad_json_and_bad_data(task_client, auth) -> None:
    h = {**auth(), "Content-Type": "application/json"}
    r = await task_client.post(f"{P}/background-task/", content=b"{not json", headers=h)
    assert_envelope(r, 422)
    r = await task_client.post(
        f"{P}/background-task/", json={"task_type": "text_analysis", "data": {"text": ""}}, headers=auth()
    )
    err = assert_envelope(r, 422)
    assert "data.text" in err["message"]


async def test_callback_to_private_address_refused(task_client, auth) -> None:
    for url in (
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "http://0x7f000001/",
    ):
        r = await task_client.post(
            f"{P}/background-task/",
            json={"task_type": "noop", "data": {}, "callback_url": url},
            headers=auth(),
        )
        assert_envelope(r, 422, "url_not_allowed")


async def test_auth_errors(task_client, auth, settings) -> None:
    url = f"{P}/background-task/"
    body = {"task_type": "noop", "data": {}}
    r = await task_client.post(url, json=body)
    assert_envelope(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = await task_client.post(url, json=body, headers={"Authorization": "Basic abc"})
    assert_envelope(r, 401)
    expired = jwt.encode(
        {"sub": "alice", "scope": "tasks", "exp": int(time.time()) - 10}, settings.jwt_secret
    )
    r = await task_client.post(url, json=body, headers={"Authorization": f"Bearer {expired}"})
    assert "expired" in assert_envelope(r, 401)["message"]
    forged = jwt.encode(
        {"sub": "alice", "scope": "tasks", "exp": int(time.time()) + 60},
        "not-the-secret-at-all-but-long-enough-0123456789",
    )
    r = await task_client.post(url, json=body, headers={"Authorization": f"Bearer {forged}"})
    assert_envelope(r, 401)
    no_sub = jwt.encode({"scope": "tasks", "exp": int(time.time()) + 60}, settings.jwt_secret)
    r = await task_client.post(url, json=body, headers={"Authorization": f"Bearer {no_sub}"})
    assert_envelope(r, 401)
    r = await task_client.post(url, json=body, headers=auth(scopes="cache"))
    assert_envelope(r, 403, "forbidden")
    r = await task_client.get(f"{P}/cache/x", headers=auth(scopes="tasks"))
    assert_envelope(r, 403)


async def test_unknown_and_foreign_tasks_are_404(task_client, auth) -> None:
    r = await task_client.get(f"{P}/task-status/00000000-0000-0000-0000-000000000000", headers=auth())
    assert_envelope(r, 404, "task_not_found")
    mine = await submit(task_client, auth("alice"), task_type="noop", data={})
    for path in ("task-status", "task-progress", "task-events"):
        r = await task_client.get(f"{P}/{path}/{mine['task_id']}", headers=auth("mallory"))
        assert_envelope(r, 404)
    r = await task_client.post(f"{P}/task-cancel/{mine['task_id']}", headers=auth("mallory"))
    assert_envelope(r, 404)
    # an admin may read any task
    r = await task_client.get(f"{P}/task-status/{mine['task_id']}", headers=auth("root", "admin"))
    assert r.status_code == 200


async def test_trailing_slash_both_ways_without_redirect(task_client, auth) -> None:
    for path in (f"{P}/background-task", f"{P}/background-task/"):
        r = await task_client.post(path, json={"task_type": "noop", "data": {}}, headers=auth())
        assert r.status_code == 202, (path, r.status_code)
    r = await task_client.get(f"{P}/tasks", headers=auth())
    assert r.status_code == 200
    r = await task_client.get(f"{P}/tasks/", headers=auth())
    assert r.status_code == 200


async def test_request_id_echoed_and_made(task_client, auth) -> None:
    r = await task_client.get(f"{P}/tasks/", headers={**auth(), "X-Request-ID": "req-abc-123"})
    assert r.headers["x-request-id"] == "req-abc-123"
    r = await task_client.get(f"{P}/task-status/nope", headers={**auth(), "X-Request-ID": "bad id <script>"})
    assert r.headers["x-request-id"] != "bad id <script>"
    assert r.json()["error"]["request_id"] == r.headers["x-request-id"]


# --- idempotency, countdown, priority, listing ----------------------------------------------------


async def test_idempotency_key(task_client, auth) -> None:
    h = {**auth("idem-user"), "Idempotency-Key": "order-42"}
    body = {"task_type": "noop", "data": {"n": 1}}
    first = await task_client.post(f"{P}/background-task/", json=body, headers=h)
    again = await task_client.post(f"{P}/background-task/", json=body, headers=h)
    assert first.status_code == again.status_code == 202
    assert first.json()["task_id"] == again.json()["task_id"]
    other = await task_client.post(f"{P}/background-task/", json={**body, "data": {"n": 2}}, headers=h)
    assert_envelope(other, 409, "idempotency_conflict")
    # the same key from another user is another request
    theirs = await task_client.post(
        f"{P}/background-task/", json=body, headers={**auth("bob"), "Idempotency-Key": "order-42"}
    )
    assert theirs.json()["task_id"] != first.json()["task_id"]
    listed = (await task_client.get(f"{P}/tasks/", headers=auth("idem-user"))).json()
    assert listed["count"] == 1


async def test_a_key_claimed_by_a_submission_that_died_before_recording_is_taken_over(
    task_client, auth, wait
) -> None:
    """The API claims the Idempotency-Key, then records and queues the task. Killed in between,
    it leaves a claim naming a task that will never exist; the client, which got no answer,
    sends the request again with the same key. Once the claim is older than a submission can
    take, that repeat is accepted as a new task instead of answered with the ghost's id."""
    user = f"ghost-{time.monotonic_ns()}"
    h = auth(user)
    body = {"task_type": "noop", "data": {"n": 7}}
    real = await task_client.post(f"{P}/background-task/", json=body, headers={**h, "Idempotency-Key": "k1"})
    assert real.status_code == 202
    with redis.Redis.from_url(os.environ["REDIS_URL"]) as r_:
        fingerprint = orjson.loads(r_.get(f"t:idem:tasks:{user}:k1"))["fp"]  # this body's
        for key, age in (("stale", 60.0), ("fresh", 1.0)):
            ghost = {"fp": fingerprint, "id": f"ghost-{key}", "at": time.time() - age}
            r_.set(f"t:idem:tasks:{user}:{key}", orjson.dumps(ghost), ex=3600)

        fresh = await task_client.post(
            f"{P}/background-task/", json=body, headers={**h, "Idempotency-Key": "fresh"}
        )
        assert fresh.status_code == 202 and fresh.json()["task_id"] == "ghost-fresh"  # may be in flight

        again = await task_client.post(
            f"{P}/background-task/", json=body, headers={**h, "Idempotency-Key": "stale"}
        )
        assert again.status_code == 202, again.text
        task_id = again.json()["task_id"]
        assert task_id not in {"ghost-stale", real.json()["task_id"]}
        assert orjson.loads(r_.get(f"t:idem:tasks:{user}:stale"))["id"] == task_id
    assert (await wait(task_client, task_id, h, {"SUCCESS", "FAILURE"}))["status"] == "SUCCESS"
    repeat = await task_client.post(
        f"{P}/background-task/", json=body, headers={**h, "Idempotency-Key": "stale"}
    )
    assert repeat.json()["task_id"] == task_id  # recorded now: an ordinary repeat


async def test_countdown_delays_start(task_client, auth, wait) -> None:
    h = auth()
    t0 = time.time()
    body = await submit(task_client, h, task_type="noop", data={}, countdown=2)
    await asyncio.sleep(1.0)
    assert (await task_client.get(f"{P}/task-status/{body['task_id']}", headers=h)).json()[
        "status"
    ] == "PENDING"
    await wait(task_client, body["task_id"], h, {"SUCCESS"})
    assert time.time() - t0 >= 2


async def test_priority_accepted(task_client, auth, wait) -> None:
    h = auth()
    body = await submit(task_client, h, task_type="noop", data={}, priority=9)
    await wait(task_client, body["task_id"], h, {"SUCCESS"})


async def test_list_own_tasks_newest_first(task_client, auth, wait) -> None:
    h = auth("lister")
    ids = [(await submit(task_client, h, task_type="noop", data={"i": i}))["task_id"] for i in range(3)]
    await wait(task_client, ids[-1], h, {"SUCCESS"})
    r = await task_client.get(f"{P}/tasks/", params={"limit": 10}, headers=h)
    listed = [t["task_id"] for t in r.json()["tasks"]]
    assert listed == list(reversed(ids))
    r = await task_client.get(f"{P}/tasks/", params={"status": "BOGUS"}, headers=h)
    assert_envelope(r, 422)
    assert (await task_client.get(f"{P}/tasks/", headers=auth("someone-else"))).json()["count"] == 0


# --- long-running: progress, events, cancel --------------------------------------------------------


async def test_long_running_progress_never_goes_backwards(task_client, auth) -> None:
    h = auth()
    body = await submit(task_client, h, path="/long-running-task/", steps=8, step_seconds=0.1, data={"k": 1})
    seen: list[int] = []
    while True:
        p = (await task_client.get(f"{P}/task-progress/{body['task_id']}", headers=h)).json()
        assert set(p) == {"task_id", "status", "current", "total", "percent", "message", "updated_at"}
        seen.append(p["current"])
        if p["status"] == "SUCCESS":
            break
        await asyncio.sleep(0.03)
    assert seen == sorted(seen)
    assert seen[-1] == 8 and p["percent"] == 100.0 and p["total"] == 8
    assert len(set(seen)) > 2  # we saw it advance, not jump


async def test_task_events_stream(task_client, auth) -> None:
    h = auth()
    body = await submit(task_client, h, path="/long-running-task/", steps=4, step_seconds=0.2)
    events = []
    async with task_client.stream("GET", f"{P}/task-events/{body['task_id']}", headers=h) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events.append((event, orjson.loads(line[6:])))
    kinds = [e for e, _ in events]
    assert kinds[-1] == "status" and events[-1][1]["status"] == "SUCCESS"
    currents = [d["current"] for e, d in events if e == "progress"]
    assert currents == sorted(currents) and currents[-1] == 4


async def test_cancel_running_task(task_client, auth, wait) -> None:
    h = auth()
    body = await submit(task_client, h, path="/long-running-task/", steps=100, step_seconds=0.2)
    tid = body["task_id"]
    for _ in range(100):
        p = (await task_client.get(f"{P}/task-progress/{tid}", headers=h)).json()
        if p["current"] >= 1:
            break
        await asyncio.sleep(0.05)
    r = await task_client.post(f"{P}/task-cancel/{tid}", headers=h)
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    done = await wait(task_client, tid, h, {"REVOKED", "SUCCESS", "FAILURE"}, timeout=10)
    assert done["status"] == "REVOKED"
    frozen = (await task_client.get(f"{P}/task-progress/{tid}", headers=h)).json()["current"]
    await asyncio.sleep(0.6)
    assert (await task_client.get(f"{P}/task-progress/{tid}", headers=h)).json()["current"] == frozen < 100
    r = await task_client.post(f"{P}/task-cancel/{tid}", headers=h)
    assert_envelope(r, 409, "task_finished")


async def test_cancel_queued_task_never_runs(task_client, auth, wait) -> None:
    h = auth()
    body = await submit(task_client, h, task_type="noop", data={}, countdown=2)
    r = await task_client.post(f"{P}/task-cancel/{body['task_id']}", headers=h)
    assert r.status_code == 202 and r.json()["status"] == "REVOKED"
    await asyncio.sleep(3)
    done = await wait(task_client, body["task_id"], h, {"REVOKED", "SUCCESS"})
    assert done["status"] == "REVOKED" and done["started_at"] is None


# --- cache ------------------------------------------------------------------------------------------


async def test_cache_crud_ttl_and_isolation(task_client, auth) -> None:
    alice, bob = auth("alice", "cache"), auth("bob", "cache")
    value = {"nested": [1, 2, {"x": None}], "s": "é"}
    r = await task_client.put(f"{P}/cache/report:2026", json={"value": value, "ttl": 60}, headers=alice)
    assert r.status_code == 200 and r.json()["value"] == value
    r = await task_client.get(f"{P}/cache/report:2026", headers=alice)
    assert r.status_code == 200
    got = r.json()
    assert got["value"] == value and 55 <= got["ttl"] <= 60
    assert_envelope(await task_client.get(f"{P}/cache/report:2026", headers=bob), 404)
    assert_envelope(await task_client.delete(f"{P}/cache/report:2026", headers=bob), 404)
    r = await task_client.get(f"{P}/cache/report:2026", params={"namespace": "alice"}, headers=bob)
    assert_envelope(r, 404)
    r = await task_client.get(
        f"{P}/cache/report:2026", params={"namespace": "alice"}, headers=auth("ops", "admin")
    )
    assert r.status_code == 200
    r = await task_client.delete(f"{P}/cache/report:2026", headers=alice)
    assert r.status_code == 204 and r.content == b""
    assert_envelope(await task_client.get(f"{P}/cache/report:2026", headers=alice), 404)
    r = await task_client.put(f"{P}/cache/default-ttl", json={"value": 1}, headers=alice)
    assert r.status_code == 200 and r.json()["ttl"] == 86_400
    assert 86_390 <= (await task_client.get(f"{P}/cache/default-ttl", headers=alice)).json()["ttl"] <= 86_400
    r = await task_client.put(f"{P}/cache/short", json={"value": 1, "ttl": 1}, headers=alice)
    await asyncio.sleep(1.3)
    assert_envelope(await task_client.get(f"{P}/cache/short", headers=alice), 404)


async def test_cache_cannot_reach_internal_keys(task_client, auth) -> None:
    h = auth("alice", "tasks cache")
    task = await submit(task_client, h, task_type="noop", data={})
    for key in (f"t:rec:{task['task_id']}", f"celery-task-meta-{task['task_id']}", "t:user:alice"):
        assert_envelope(await task_client.get(f"{P}/cache/{key}", headers=h), 404)
        assert_envelope(await task_client.delete(f"{P}/cache/{key}", headers=h), 404)
    for key in ("../t:rec:x", "a b", "x" * 201, "%2e%2e"):
        r = await task_client.get(f"{P}/cache/{key}", headers=h)
        assert r.status_code in (404, 422), (key, r.status_code)
    # the user whose name looks like a prefix cannot cross into another namespace
    await task_client.put(f"{P}/cache/b:c", json={"value": "alice's"}, headers=auth("a", "cache"))
    assert_envelope(await task_client.get(f"{P}/cache/c", headers=auth("a:b", "cache")), 404)


async def test_cache_value_validation(task_client, auth) -> None:
    h = auth("alice", "cache")
    assert_envelope(await task_client.put(f"{P}/cache/k", json={"ttl": 5}, headers=h), 422)
    assert_envelope(await task_client.put(f"{P}/cache/k", json={"value": 1, "ttl": 0}, headers=h), 422)
    big = "x" * 1_100_000
    assert_envelope(await task_client.put(f"{P}/cache/k", json={"value": big}, headers=h), 413)


# --- operations -------------------------------------------------------------------------------------


async def test_health_ready_metrics(task_client, auth) -> None:
    assert (await task_client.get("/health")).json()["status"] == "ok"
    r = await task_client.get("/ready")
    assert r.status_code == 200 and r.json()["checks"] == {"redis": "ok", "rabbitmq": "ok"}
    before = (await task_client.get("/metrics")).text
    await task_client.get(f"{P}/task-status/some-unknown-id", headers=auth())
    r = await task_client.post(
        f"{P}/background-task/", json={"task_type": "noop", "data": {}}, headers=auth()
    )
    assert r.status_code == 202, r.text
    text = (await task_client.get("/metrics")).text
    assert "some-unknown-id" not in text

    def moved(name: str, **labels: str) -> float:
        return sample_value(text, name, labels) - sample_value(before, name, labels)

    status_route = {"route": "/smart_application/tasks/task-status/{task_id}", "method": "GET"}
    assert moved("smartapp_http_requests_total", **status_route, status="404") == 1
    assert moved("smartapp_tasks_submitted_total", queue="default") == 1


async def test_openapi_documents_routes(task_client) -> None:
    spec = (await task_client.get("/openapi.json")).json()
    paths = spec["paths"]
    assert f"{P}/background-task/" in paths and f"{P}/task-status/{{task_id}}" in paths
    assert f"{P}/cache/{{key}}" in paths


async def test_request_id_reaches_worker_logs(task_client, task_stack, auth, wait) -> None:
    h = {**auth(), "X-Request-ID": "trace-me-0042"}
    body = await submit(task_client, h, task_type="noop", data={})
    await wait(task_client, body["task_id"], h, {"SUCCESS"})
    worker = next(p for p in task_stack.procs if p.name.startswith("worker"))
    lines = [orjson.loads(line) for line in worker.log_text().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("task_id") == body["task_id"]]
    assert any(line.get("request_id") == "trace-me-0042" for line in mine), mine
