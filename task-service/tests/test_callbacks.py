"""callback_url: the final status reaches a real local receiver, signed, once; private targets refused."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

P = "/smart_application/tasks"


class Receiver:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.hits: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.hits.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((parts.hostname, parts.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(s.split(",", 1)[1], expected) for s in headers["webhook-signature"].split()
    )


async def test_callback_delivered_signed(task_client, task_stack, auth, wait) -> None:
    h = auth("cb-user")
    secret = (await task_client.get(f"{P}/callback-secret", headers=h)).json()["secret"]
    other_secret = (await task_client.get(f"{P}/callback-secret", headers=auth("someone"))).json()["secret"]
    assert secret.startswith("whsec_") and secret != other_secret
    with Receiver(task_stack.urls["callback"]) as receiver:
        receiver.fail_first = 1  # the first attempt meets a 503 and is retried
        r = await task_client.post(
            f"{P}/background-task/",
            json={"task_type": "noop", "data": {"n": 7}, "callback_url": task_stack.urls["callback"]},
            headers=h,
        )
        assert r.status_code == 202, r.text
        task_id = r.json()["task_id"]
        await wait(task_client, task_id, h, {"SUCCESS"})
        for _ in range(200):
            if receiver.hits:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
    assert len(receiver.hits) == 1
    headers, body = receiver.hits[0]
    assert verify(secret, headers, body)
    assert not verify(other_secret, headers, body)
    event = json.loads(body)
    assert event["type"] == "task.finished"
    assert event["data"]["task_id"] == task_id and event["data"]["status"] == "SUCCESS"
    assert event["data"]["result"] == {"echo": {"n": 7}}


async def test_expired_task_calls_back_with_status_expired(task_client, task_stack, auth, wait) -> None:
    h = auth("cb-expired")
    with Receiver(task_stack.urls["callback"]) as receiver:
        r = await task_client.post(
            f"{P}/background-task/",
            json={
                "task_type": "noop",
                "countdown": 3,
                "queue_timeout_seconds": 0.5,
                "callback_url": task_stack.urls["callback"],
            },
            headers=h,
        )
        assert r.status_code == 202, r.text
        task_id = r.json()["task_id"]
        await wait(task_client, task_id, h, {"EXPIRED"}, timeout=10)
        for _ in range(100):
            if receiver.hits:
                break
            await asyncio.sleep(0.1)
    assert len(receiver.hits) == 1
    data = json.loads(receiver.hits[0][1])["data"]
    assert data["task_id"] == task_id and data["status"] == "EXPIRED"
    assert data["error"]["type"] == "QueueTimeout"
