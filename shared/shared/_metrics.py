"""Prometheus metrics: HTTP by route template, tasks by name and queue, queue depth, and the
worker's metrics server.

Safe with prefork workers: children write to PROMETHEUS_MULTIPROC_DIR (set by _bootstrap) and
the worker's main process serves the aggregate on a port of its own.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared._context import request_id_var

if TYPE_CHECKING:
    from shared._queues import QueueName
    from shared._settings import BaseServiceSettings

log = logging.getLogger("shared.metrics")

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
TASKS_EXPIRED = Counter(
    f"{NS}_tasks_expired_total",
    "Tasks that ended EXPIRED: not started within their queue_timeout_seconds",
    ["task", "queue", "where"],  # where: worker (found on pick-up) | pass (still waiting in Redis)
)
TASKS_REPLAYED = Counter(
    f"{NS}_tasks_replayed_total", "Failed tasks started again (POST /task-retry, /tasks/retry)", ["mode"]
)
TASKS_TIMED_OUT = Counter(
    f"{NS}_tasks_run_timeout_total", "Tasks stopped by their run_timeout_seconds", ["task", "queue"]
)
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
    "Notification delivery attempts by outcome (delivered, gone, retry, failed, expired), "
    "and deliveries planned deferred (quiet hours) or skipped (channel switched off)",
    ["channel", "outcome"],
)
NOTIFICATIONS_SCHEDULED = Counter(
    f"{NS}_notifications_scheduled_total",
    "Scheduled notifications by event (scheduled, released when due, cancelled)",
    ["event"],
)
SCRAPE_PAGES = Counter(f"{NS}_scrape_pages_total", "Pages fetched by outcome", ["outcome"])
# Schedules (task-service's scheduler): each tick claimed and fired, ticks missed while no
# scheduler ran (collapsed into one run), runs fired late, claimed runs taken over from a
# scheduler that died mid-run, and schedules overdue right now.
SCHEDULE_RUNS = Counter(f"{NS}_schedule_runs_total", "Schedule ticks run, by outcome", ["outcome"])
SCHEDULE_TICKS_SKIPPED = Counter(
    f"{NS}_schedule_ticks_skipped_total", "Schedule ticks missed while no scheduler ran (run once, not each)"
)
SCHEDULE_RUNS_LATE = Counter(f"{NS}_schedule_runs_late_total", "Schedule ticks run more than 30 s after due")
SCHEDULE_RUNS_RECOVERED = Counter(
    f"{NS}_schedule_runs_recovered_total",
    "Claimed schedule ticks whose scheduler stopped before finishing them, finished by another",
)
SCHEDULES_OVERDUE = Gauge(
    f"{NS}_schedules_overdue",
    "Active schedules whose next run is more than 60 s past due",
    multiprocess_mode="max",
)
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
        started = failed = False
        rid_header = (b"x-request-id", rid.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                headers = list(message.get("headers", []))
                if not any(h[0].lower() == b"x-request-id" for h in headers):
                    headers.append(rid_header)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException:
            failed = True
            raise
        finally:
            if not started and not failed:
                # The app gave up without answering because the client went away first (an
                # abandoned upload): nginx's 499, not a server error for the 5xx alerts.
                status = 499
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


class BrokerQueueProbe:
    """Ready messages and consumers of some queues, read over one AMQP connection that stays
    open between scrapes.

    A connection per read is churn the broker pays for and logs (with three workers scraped
    every 10 s, 18 connections a minute). The answer is also kept for `max_age` seconds, so
    several Prometheus servers scraping one worker cost one read. Heartbeats are off (the
    connection sits idle between scrapes and nothing would answer them); a connection the
    broker dropped meanwhile fails at its next use and is replaced once, at once.
    """

    def __init__(
        self, url: str, queues: Sequence[str], *, max_age: float = 2.0, timeout: float = 2.0
    ) -> None:
        self.url = url
        self.queues = list(queues)
        self.max_age = max_age
        self.timeout = timeout
        self._lock = threading.Lock()  # the metrics server answers scrapes on many threads
        self._conn: Any = None
        self._channel: Any = None
        self._last: tuple[float, dict[str, tuple[int, int]]] | None = None
        atexit.register(self.close)  # a clean close: the broker logs no lost connection

    def __call__(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < self.max_age:
                return self._last[1]
            reused = self._conn is not None
            try:
                stats = self._read()
            except Exception:
                self._close()
                if not reused:
                    raise
                stats = self._read_or_close()  # the kept connection had died: one fresh try
            self._last = (time.monotonic(), stats)
            return stats

    def _read_or_close(self) -> dict[str, tuple[int, int]]:
        try:
            return self._read()
        except Exception:
            self._close()
            raise

    def _read(self) -> dict[str, tuple[int, int]]:
        if self._conn is None:
            from kombu import Connection

            conn = Connection(
                self.url,
                connect_timeout=self.timeout,
                heartbeat=0,
                transport_options={
                    "read_timeout": self.timeout,
                    "write_timeout": self.timeout,
                    "client_properties": {"connection_name": f"smartapp-metrics {os.getpid()}"},
                },
            )
            self._conn = conn
            conn.connect()
        if self._channel is None:
            self._channel = self._conn.channel()
        out: dict[str, tuple[int, int]] = {}
        for name in self.queues:
            _, ready, consumers = self._channel.queue_declare(name, passive=True)
            out[name] = (ready, consumers)
        return out

    def _close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.release()

    def close(self) -> None:
        with self._lock:
            self._close()


def start_worker_metrics(settings: BaseServiceSettings, queue: QueueName) -> None:
    """Serve the worker's metrics (all pool processes summed) on WORKER_METRICS_PORT."""
    from prometheus_client import start_http_server

    port = settings.worker_metrics_port
    if not port:
        return
    mp_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if mp_dir:
        for stale in Path(mp_dir).glob("*.db"):  # files of an earlier run would be summed in
            stale.unlink(missing_ok=True)
    collector = QueueDepthCollector(BrokerQueueProbe(settings.broker_url, [queue.value]))
    start_http_server(port, addr=settings.host, registry=metrics_registry([collector]))
    log.info("worker metrics on %s:%s", settings.host, port)
