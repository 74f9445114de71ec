"""Prometheus metrics: HTTP by route template, tasks by name and queue, queue depth.

Safe with prefork workers: children write to PROMETHEUS_MULTIPROC_DIR (set by _bootstrap) and
the worker's main process serves the aggregate on a port of its own.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared._context import request_id_var

NS = "smartapp"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800)

HTTP_REQUESTS = Counter(
    f"{NS}_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
HTTP_DURATION = Histogram(
    f"{NS}_http_request_duration_seconds",
    "HTTP request duration",
    ["service", "method", "route"],
    buckets=_LATENCY_BUCKETS,
)
TASKS_SUBMITTED = Counter(f"{NS}_tasks_submitted_total", "Tasks published", ["task", "queue"])
TASKS_STARTED = Counter(f"{NS}_tasks_started_total", "Tasks started by a worker", ["task", "queue"])
TASKS_SUCCEEDED = Counter(f"{NS}_tasks_succeeded_total", "Tasks succeeded", ["task", "queue"])
TASKS_FAILED = Counter(f"{NS}_tasks_failed_total", "Tasks failed", ["task", "queue"])
TASKS_RETRIED = Counter(f"{NS}_tasks_retried_total", "Task retries", ["task", "queue"])
TASKS_REVOKED = Counter(f"{NS}_tasks_revoked_total", "Tasks cancelled", ["task", "queue"])
TASK_DURATION = Histogram(
    f"{NS}_task_duration_seconds", "Task run time", ["task", "queue"], buckets=_TASK_BUCKETS
)
TASK_QUEUE_WAIT = Histogram(
    f"{NS}_task_queue_wait_seconds",
    "Time from submission (or ETA) to start",
    ["task", "queue"],
    buckets=_TASK_BUCKETS,
)

# Domain metrics, defined once here so every process registers each name once.
NOTIFICATION_DELIVERIES = Counter(
    f"{NS}_notifications_deliveries_total",
    "Notification delivery attempts by outcome (delivered, gone, retry, failed, expired)",
    ["channel", "outcome"],
)
SCRAPE_PAGES = Counter(f"{NS}_scrape_pages_total", "Pages fetched by outcome", ["outcome"])
OPENAI_TOKENS = Counter(f"{NS}_openai_tokens_total", "Model tokens used", ["model", "kind"])

_RID_RE = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


def clean_request_id(raw: str | None) -> str:
    """Keep a caller's id when it is sane; otherwise make one (ids reach logs, so no injection)."""
    if raw and _RID_RE.fullmatch(raw):
        return raw
    return uuid.uuid4().hex


class ObservabilityMiddleware:
    """Request id in and out, and HTTP metrics labelled by route template (never the raw path)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value.decode("latin-1")
                break
        rid = clean_request_id(rid)
        token = request_id_var.set(rid)
        start = time.perf_counter()
        status = 500
        rid_header = (b"x-request-id", rid.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if not any(h[0].lower() == b"x-request-id" for h in headers):
                    headers.append(rid_header)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            HTTP_REQUESTS.labels(self.service, method, template, str(status)).inc()
            HTTP_DURATION.labels(self.service, method, template).observe(time.perf_counter() - start)
            request_id_var.reset(token)


def metrics_registry(extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """The registry to expose: multiprocess aggregate when configured, else the default one."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    for collector in extra:
        # Tests build several apps in one process: a collector may be registered already.
        with contextlib.suppress(ValueError):
            registry.register(collector)
    return registry


def render_metrics(registry: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_LATEST


class QueueDepthCollector(Collector):
    """Ready and unacknowledged messages per queue, read from the broker at scrape time."""

    def __init__(self, probe: Callable[[], dict[str, tuple[int, int]]]) -> None:
        self.probe = probe

    def collect(self) -> Iterable[Any]:
        depth = GaugeMetricFamily(f"{NS}_queue_depth", "Messages ready in the queue", labels=["queue"])
        consumers = GaugeMetricFamily(f"{NS}_queue_consumers", "Consumers of the queue", labels=["queue"])
        up = GaugeMetricFamily(f"{NS}_broker_up", "1 when the broker answered the last scrape")
        try:
            stats = self.probe()
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for queue, (ready, n_consumers) in stats.items():
            depth.add_metric([queue], ready)
            consumers.add_metric([queue], n_consumers)
        yield depth
        yield consumers
        yield up
