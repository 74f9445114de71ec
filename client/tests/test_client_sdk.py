"""The SDK against the real platform: gateway, services, workers, Redis and RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from clientkit import Platform, User

import smartapp
from smartapp import AsyncClient, Client


def test_submit_task_wait_returns_the_final_status_with_its_result(platform: Platform, new_user) -> None:
    with Client(platform.url, token=new_user().token) as client:
        task = client.submit_task("data_processing", {"input": "  sample   data "})
        assert task.accepted is not None and task.accepted.status == "PENDING"
        assert task.accepted.queue == "default" and task.request_id
        final = task.wait(timeout=60)
    assert final.status == "SUCCESS" and final.error is None
    assert final.result["processed"] == {"input": "sample data"}


def test_long_running_events_yield_progress_in_order_then_the_final_status(
    platform: Platform, new_user
) -> None:
    with Client(platform.url, token=new_user().token) as client:
        task = client.submit_long_running(steps=4, step_seconds=0.15, data={"n": 1})
        events = list(task.events(timeout=60))
    assert events[-1].final is not None and events[-1].final.status == "SUCCESS"
    assert all(e.final is None for e in events[:-1])
    progress = [e for e in events if e.kind == "progress" and e.total]
    assert progress, events
    assert {e.total for e in progress} == {4}
    currents = [e.current or 0 for e in progress]
    assert currents == sorted(currents)
    assert events[-1].final.result is not None


def test_get_task_of_an_unknown_id_raises_not_found_with_code_and_request_id(
    platform: Platform, new_user
) -> None:
    with Client(platform.url, token=new_user().token) as client:
        with pytest.raises(smartapp.NotFound) as caught:
            client.get_task(str(uuid.uuid4()))
        with pytest.raises(smartapp.NotFound):
            client.task(str(uuid.uuid4())).wait(timeout=10)
    assert caught.value.status_code == 404
    assert caught.value.code and caught.value.request_id


def test_another_users_task_is_not_found(platform: Platform, new_user) -> None:
    with (
        Client(platform.url, token=new_user().token) as alice,
        Client(platform.url, token=new_user().token) as bob,
    ):
        task = alice.submit_task("noop", {})
        with pytest.raises(smartapp.NotFound):
            bob.get_task(task.task_id)


def test_errors_are_typed_exceptions_from_the_envelope(platform: Platform, new_user) -> None:
    with (
        Client(platform.url, token=new_user().token) as client,
        pytest.raises(smartapp.ValidationError) as unknown,
    ):
        client.submit_task("no_such_type", {})
    assert unknown.value.code == "unknown_task_type" and "data_processing" in unknown.value.message
    assert unknown.value.request_id
    with Client(platform.url, token="not-a-jwt") as client, pytest.raises(smartapp.Unauthorized) as refused:
        client.list_tasks()
    assert refused.value.status_code == 401 and refused.value.request_id
    with Client(platform.url, token=new_user("cache").token) as client, pytest.raises(smartapp.Forbidden):
        client.submit_task("noop", {})


def test_an_explicit_idempotency_key_returns_the_same_task_and_the_automatic_one_does_not(
    platform: Platform, new_user
) -> None:
    key = str(uuid.uuid4())
    with Client(platform.url, token=new_user().token) as client:
        first = client.submit_task("noop", {"x": 1}, idempotency_key=key)
        again = client.submit_task("noop", {"x": 1}, idempotency_key=key)
        other = client.submit_task("noop", {"x": 1})
        listed = {t.task_id for t in client.list_tasks(limit=10)}
    assert first.task_id == again.task_id
    assert other.task_id != first.task_id
    assert {first.task_id, other.task_id} <= listed


def test_cancel_stops_a_running_task_and_wait_reports_revoked(platform: Platform, new_user) -> None:
    with Client(platform.url, token=new_user().token) as client:
        task = client.submit_long_running(steps=200, step_seconds=0.1)
        for event in task.events(timeout=30):
            if event.kind == "progress" and (event.current or 0) >= 1:
                break
        answer = task.cancel()
        assert answer.cancel_requested is True
        final = task.wait(timeout=60)
        progress = task.progress()
    assert final.status == "REVOKED"
    assert progress.current < 200


def test_cache_put_get_delete_round_trip(platform: Platform, new_user) -> None:
    with Client(platform.url, token=new_user().token) as client:
        put = client.cache_put("greeting", {"hello": ["world", 1]}, ttl=120)
        got = client.cache_get("greeting")
        client.cache_delete("greeting")
        with pytest.raises(smartapp.NotFound):
            client.cache_get("greeting")
        with pytest.raises(smartapp.NotFound):
            client.cache_delete("greeting")
    assert put.value == got.value == {"hello": ["world", 1]}
    assert got.ttl is not None and 0 < got.ttl <= 120


def test_a_key_cannot_climb_out_of_its_path_segment(platform: Platform, new_user) -> None:
    """`../` in a key is sent percent-encoded: it names a key, never another endpoint."""
    with Client(platform.url, token=new_user().token) as client, pytest.raises(smartapp.NotFound):
        client.get_task("../tasks/")


def test_notifications_devices_and_inbox(platform: Platform, new_user: Callable[..., User]) -> None:
    user = new_user("tasks notify:send")  # a batch always needs notify:send
    with Client(platform.url, token=user.token) as client:
        assert len(client.vapid_public_key()) > 80  # an uncompressed P-256 point, base64url
        device = client.register_device(
            "webhook", url=f"http://127.0.0.1:{platform.hook_port}/hook", name="ci"
        )
        assert device.channel == "webhook" and device.secret and device.secret.startswith("whsec_")
        assert [d.device_id for d in client.list_devices()] == [device.device_id]
        client.delete_device(device.device_id)
        assert client.list_devices() == []

        sent = client.send_notification(user.sub, "Build done", "all green", {"build": 7})
        assert sent.status == "queued"
        batch = client.batch_notifications([{"user_id": user.sub, "title": f"n{i}"} for i in range(2)])
        assert batch.count == 2 and len(batch.notification_ids) == 2
        deadline = time.monotonic() + 30
        while True:
            page = client.inbox()
            status = client.notification_status(sent.notification_id)
            if len(page.items) == 3 and status.status not in ("queued", "sending"):
                break
            assert time.monotonic() < deadline, (page, status)
            time.sleep(0.1)
        assert status.status == "inbox_only"  # no device left to deliver to
        assert {i.title for i in page.items} == {"Build done", "n0", "n1"}
        assert page.unread_count == 3
        assert client.batch_status(batch.batch_id).count == 2
        read = client.mark_read(sent.notification_id)
        assert read.read is True and read.unread_count == 2


async def test_async_client_has_the_same_methods_as_coroutines(platform: Platform, new_user) -> None:
    async with AsyncClient(platform.url, token=new_user().token) as client:
        task = await client.submit_long_running(steps=3, step_seconds=0.1)
        kinds = [e.kind async for e in task.events(timeout=60)]
        final = await task.wait(timeout=30)
        assert (await client.get_task(task.task_id)).status == "SUCCESS"
        with pytest.raises(smartapp.NotFound):
            await client.get_task(str(uuid.uuid4()))
        await client.cache_put("k", 3)
        assert (await client.cache_get("k")).value == 3
    assert kinds[-1] == "status" and "progress" in kinds
    assert final.status == "SUCCESS"


async def test_scrape_returns_a_task_whose_result_has_markdown_and_summary(
    platform: Platform, new_user
) -> None:
    async with AsyncClient(platform.url, token=new_user().token) as client:
        task = await client.scrape(f"{platform.pages.base}/article", openai_key=platform.openai_key)
        final = await task.wait(timeout=60)
    assert final.status == "SUCCESS", final
    assert final.result["markdown"] and final.result["summary"]
    assert final.result["final_url"].endswith("/article")


async def test_async_wait_times_out_with_wait_timeout(platform: Platform, new_user) -> None:
    async with AsyncClient(platform.url, token=new_user().token) as client:
        task = await client.submit_long_running(steps=100, step_seconds=0.2)
        with pytest.raises(smartapp.WaitTimeout):
            await task.wait(timeout=0.5)
        await task.cancel()
        assert (await task.wait(timeout=30)).status == "REVOKED"
    await asyncio.sleep(0)


@pytest.fixture
def flaky_events(platform: Platform) -> Iterator[tuple[str, list[str]]]:
    """A loopback proxy to the gateway whose `task-events` streams go wrong, in order:

    the first sends one event then drops the connection mid-body, the second drops at once,
    every later one is refused with 503. Everything else is forwarded as is.
    """
    seen: list[str] = []
    upstream = httpx.Client(base_url=platform.url, timeout=30)

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            seen.append(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if "/task-events/" in self.path:
                n = sum("/task-events/" in p for p in seen)
                if n <= 2:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Content-Length", "100000")  # promised, never sent: a drop
                    self.end_headers()
                    if n == 1:
                        tid = self.path.rsplit("/", 1)[1]
                        event = {"task_id": tid, "status": "PROGRESS", "current": 0, "total": 3}
                        self.wfile.write(f"event: progress\ndata: {json.dumps(event)}\n\n".encode())
                        self.wfile.flush()
                    self.close_connection = True
                    return
                raw = b'{"error": {"code": "service_unavailable", "message": "x", "request_id": "r"}}'
                self.send_response(503)
                self.send_header("Retry-After", "1")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
                return
            headers = {
                k: v for k, v in self.headers.items() if k.lower() in {"authorization", "content-type"}
            }
            r = upstream.request(self.command, self.path, content=body, headers=headers)
            self.send_response(r.status_code)
            for k, v in r.headers.items():
                if k.lower() in {"content-type", "x-request-id", "retry-after"}:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(r.content)))
            self.end_headers()
            self.wfile.write(r.content)

        do_GET = do_POST = _forward

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        upstream.close()


def test_events_reconnect_after_a_drop_then_fall_back_to_polling(flaky_events, new_user) -> None:
    url, seen = flaky_events
    policy = smartapp.StreamPolicy(reconnects=3, poll_interval=0.1)
    with Client(url, token=new_user().token, stream=policy) as client:
        task = client.submit_long_running(steps=3, step_seconds=0.2)
        events = list(task.events(timeout=60))
    streams = [p for p in seen if "/task-events/" in p]
    polls = [p for p in seen if "/task-progress/" in p]
    assert len(streams) == 3  # dropped, reconnected and dropped, reconnected and refused
    assert polls, seen  # then polling
    assert seen.index(polls[0]) > seen.index(streams[-1])
    assert events[0].kind == "progress" and events[0].current == 0  # from the first, dropped stream
    assert events[-1].final is not None and events[-1].final.status == "SUCCESS"
    assert events[-1].final.result["completed_steps"] == 3


async def test_async_events_reconnect_after_a_drop_then_fall_back_to_polling(flaky_events, new_user) -> None:
    url, seen = flaky_events
    policy = smartapp.StreamPolicy(reconnects=3, poll_interval=0.1)
    async with AsyncClient(url, token=new_user().token, stream=policy) as client:
        task = await client.submit_long_running(steps=3, step_seconds=0.2)
        final = await task.wait(timeout=60)
    assert sum("/task-events/" in p for p in seen) == 3
    assert any("/task-progress/" in p for p in seen)
    assert final.status == "SUCCESS" and final.result["completed_steps"] == 3
