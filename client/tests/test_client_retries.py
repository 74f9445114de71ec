"""Retries on 429/503 honouring Retry-After, against a small loopback HTTP server.

The server answers from a script (503 then 202, ...) and records what it was sent: the
Idempotency-Key of every attempt and when each came.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import smartapp
from smartapp import AsyncClient, Client

ACCEPTED = {
    "task_id": "t-1",
    "status": "PENDING",
    "task_type": "noop",
    "queue": "default",
    "links": {"status": "s", "progress": "p", "events": "e", "cancel": "c"},
}


def _envelope(code: str) -> dict[str, object]:
    return {"error": {"code": code, "message": f"{code} for now", "request_id": f"rid-{code}"}}


@dataclass
class Scripted:
    script: list[tuple[int, dict[str, str], object]]
    seen: list[tuple[float, str, str | None]] = field(default_factory=list)  # (when, path, key)


@pytest.fixture
def scripted() -> Iterator[tuple[str, Scripted]]:
    state = Scripted([])

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            state.seen.append((time.monotonic(), self.path, self.headers.get("Idempotency-Key")))
            status, headers, body = state.script.pop(0) if state.script else (500, {}, _envelope("empty"))
            raw = json.dumps(body).encode()
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", **headers}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = _answer

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_503_then_202_is_retried_after_retry_after_with_the_same_idempotency_key(scripted) -> None:
    url, state = scripted
    state.script = [(503, {"Retry-After": "1"}, _envelope("broker_unavailable")), (202, {}, ACCEPTED)]
    with Client(url, token="t") as client:
        handle = client.submit_task("noop", {})
    assert handle.task_id == "t-1"
    assert len(state.seen) == 2
    (t0, path0, key0), (t1, path1, key1) = state.seen
    assert path0 == path1 == "/smart_application/tasks/background-task/"
    assert key0 is not None and key0 == key1  # the same request, not a second task
    assert t1 - t0 >= 0.95  # Retry-After: 1 was honoured


def test_each_submission_gets_its_own_automatic_idempotency_key(scripted) -> None:
    url, state = scripted
    state.script = [(202, {}, ACCEPTED), (202, {}, ACCEPTED)]
    with Client(url) as client:
        client.submit_long_running(2, 0)
        client.submit_long_running(2, 0)
    keys = [k for _, _, k in state.seen]
    assert len(set(keys)) == 2 and all(k and len(k) == 36 for k in keys)


def test_retries_are_bounded_and_the_last_refusal_is_raised_with_its_envelope(scripted) -> None:
    url, state = scripted
    state.script = [(429, {"Retry-After": "0"}, _envelope("rate_limited"))] * 5
    with Client(url, max_retries=2) as client, pytest.raises(smartapp.RateLimited) as caught:
        client.get_task("x")
    assert len(state.seen) == 3  # one try and two retries
    assert caught.value.code == "rate_limited" and caught.value.request_id == "rid-rate_limited"
    assert caught.value.retry_after == 0


def test_a_retry_after_beyond_the_cap_is_not_slept_through(scripted) -> None:
    url, state = scripted
    state.script = [(503, {"Retry-After": "3600"}, _envelope("service_unavailable"))]
    started = time.monotonic()
    with Client(url, max_retry_wait=5) as client, pytest.raises(smartapp.ServiceUnavailable) as caught:
        client.cache_get("k")
    assert time.monotonic() - started < 3
    assert len(state.seen) == 1 and caught.value.retry_after == 3600


def test_other_errors_are_not_retried(scripted) -> None:
    url, state = scripted
    state.script = [(404, {}, _envelope("task_not_found"))]
    with Client(url) as client, pytest.raises(smartapp.NotFound) as caught:
        client.get_task("nope")
    assert len(state.seen) == 1 and caught.value.code == "task_not_found"


async def test_the_async_client_retries_the_same_way(scripted) -> None:
    url, state = scripted
    state.script = [(429, {"Retry-After": "1"}, _envelope("rate_limited")), (202, {}, ACCEPTED)]
    async with AsyncClient(url) as client:
        handle = await client.submit_task("noop")
    assert handle.task_id == "t-1"
    (t0, _, key0), (t1, _, key1) = state.seen
    assert key0 == key1 and t1 - t0 >= 0.95


def test_an_error_without_an_envelope_still_raises_by_status(scripted) -> None:
    url, state = scripted
    state.script = [(502, {"X-Request-ID": "rid-proxy"}, "bad gateway")]
    with Client(url, max_retries=0) as client, pytest.raises(smartapp.ServerError) as caught:
        client.list_tasks()
    assert caught.value.status_code == 502 and caught.value.request_id == "rid-proxy"
