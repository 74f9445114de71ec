"""Task callbacks: the final status POSTed to the owner's callback_url, signed.

Signed per Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature) with a
secret of the owner's own (GET /callback-secret), derived from SECRET_KEY so every replica
agrees without storing it. Delivered by a task of its own, retried with backoff, so a slow
receiver never holds up a worker's real work. The POST goes through the one outbound client
on the worker runtime's loop (one client per worker process).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from typing import Any

import orjson
from celery import Task

from shared import worker_runtime
from shared._http_client import OutboundClient
from shared._ip_policy import Allowlist
from shared._records import merge_status
from shared._settings import BaseServiceSettings
from shared._url_policy import OutboundError, OutboundRefused
from shared.webhooks import signed_headers

log = logging.getLogger("shared.callbacks")

CALLBACK_TIMEOUT = 10.0
MAX_ATTEMPTS = 6


def callback_secret(settings: BaseServiceSettings, owner: str) -> str:
    raw = hmac.new(
        settings.secret_key.encode(), b"callback-secret:" + owner.encode(), hashlib.sha256
    ).digest()
    return "whsec_" + base64.b64encode(raw).decode()


def callback_request(settings: BaseServiceSettings, record: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps({"type": "task.finished", "data": merge_status(record, None)})
    msg_id = f"msg_{record['task_id']}"  # the same id on every retry, so receivers can de-duplicate
    headers = signed_headers(callback_secret(settings, record["owner"]), msg_id, body)
    headers["content-type"] = "application/json"
    return body, headers


def register_callback_task(app: Any, queue: str) -> Any:
    """The per-app delivery task; its name carries the queue so each service serves its own."""

    def make_client() -> OutboundClient:
        client = OutboundClient(Allowlist.parse(app.settings.outbound_allowlist), timeout=CALLBACK_TIMEOUT)
        worker_runtime.on_shutdown(client.aclose)
        return client

    client_for_process = worker_runtime.process_local(make_client)

    @app.task(
        name=f"{queue}.deliver_callback",
        bind=True,
        base=Task,
        max_retries=MAX_ATTEMPTS - 1,
        acks_late=True,
        ignore_result=True,
    )
    def deliver_callback(self: Task, task_id: str) -> None:
        settings: BaseServiceSettings = app.settings
        record = app.call(app.records.get(task_id))
        if not record or not record.get("callback_url"):
            return
        client = client_for_process()
        body, headers = callback_request(settings, record)
        try:
            resp = worker_runtime.run(
                client.post(record["callback_url"], content=body, headers=headers, max_redirects=0)
            )
        except OutboundRefused as exc:
            log.warning("callback refused: %s", exc.reason, extra={"task_id": task_id})
            return
        except OutboundError as exc:
            raise self.retry(countdown=min(300, 2**self.request.retries), exc=exc) from None
        if resp.status_code >= 500 or resp.status_code == 429:
            raise self.retry(countdown=min(300, 2**self.request.retries))
        log.info("callback delivered: %s", resp.status_code, extra={"task_id": task_id})

    return deliver_callback


def enqueue_callback(task: Task, task_id: str) -> None:
    record = getattr(task.request, "platform_record", None)
    if record is None:  # a final status reached outside the task's own run (e.g. a time limit)
        record = task.app.call(task.app.records.get(task_id))  # type: ignore[attr-defined]
    enqueue_callback_of(task.app, task_id, record)


def enqueue_callback_of(app: Any, task_id: str, record: dict[str, Any] | None) -> None:
    """Queue the delivery of a final status reached outside any task run (e.g. EXPIRED)."""
    if record and record.get("callback_url"):
        queue = app.conf.task_default_queue
        app.send_task(f"{queue}.deliver_callback", kwargs={"task_id": task_id}, queue=queue)
