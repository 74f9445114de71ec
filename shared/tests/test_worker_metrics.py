"""A worker's /metrics reads the queue depth over one kept AMQP connection, not one per read.

Against the real task worker (task_stack) and the real RabbitMQ: the connections are read
from the broker itself, in this session's vhost.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import httpx
import pytest

import testkit
from testkit import Proc, Stack


def _metrics_url(worker: Proc) -> str:
    return f"http://127.0.0.1:{worker.env['WORKER_METRICS_PORT']}/metrics"


def _worker(stack: Stack) -> Proc:
    (worker,) = [p for p in stack.procs if "WORKER_METRICS_PORT" in p.env]
    return worker


COLUMNS = ["vhost", "name", "connected_at", "client_properties"]


def _metrics_connections(pid: int) -> list[tuple[str, int]]:
    """(name, connected_at) of worker `pid`'s metrics connections in the session vhost."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", *COLUMNS, "--formatter", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    found = []
    for conn in json.loads(out):
        props = {p[0]: p[2] for p in conn["client_properties"]}
        if conn["vhost"] == os.environ["TEST_SESSION_VHOST"] and props.get("connection_name") == (
            f"smartapp-metrics {pid}"
        ):
            found.append((conn["name"], conn["connected_at"]))
    return found


def _close_connection(name: str) -> None:
    """Close one connection, by name, as the broker would when it restarts."""
    table = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "name"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    (pid,) = [line.split("\t")[0] for line in table.splitlines() if line.endswith("\t" + name)]
    subprocess.run(
        ["rabbitmqctl", "-q", "close_connection", pid, "closed by a test"],
        capture_output=True,
        timeout=60,
        check=True,
    )


def _queue_figures(url: str) -> tuple[float, float]:
    """(broker up, consumers of `default`); the depth series must be there too."""
    text = httpx.get(url, timeout=10).text
    assert 'smartapp_queue_depth{queue="default"}' in text
    return (
        testkit.sample_value(text, "smartapp_broker_up"),
        testkit.sample_value(text, "smartapp_queue_consumers", {"queue": "default"}),
    )


@pytest.fixture
def worker(task_stack: Stack) -> Proc:
    return _worker(task_stack)


def test_metrics_reads_share_one_broker_connection(worker: Proc) -> None:
    url = _metrics_url(worker)
    # Up, with the worker itself as the queue's one consumer.
    assert _queue_figures(url) == (1.0, 1.0)
    (first,) = _metrics_connections(worker.pid)
    # Reads close together share one answer; reads further apart than its 2 s lifetime ask
    # the broker again, over the same connection.
    for pause in (0.0, 0.0, 2.2, 2.2):
        time.sleep(pause)
        assert _queue_figures(url)[0] == 1.0
    assert _metrics_connections(worker.pid) == [first]


def test_a_dropped_metrics_connection_is_replaced_at_the_next_read(worker: Proc) -> None:
    url = _metrics_url(worker)
    assert _queue_figures(url)[0] == 1.0
    (first,) = _metrics_connections(worker.pid)
    # The broker drops it (as a broker restart would); only this worker's metrics connection.
    _close_connection(first[0])
    time.sleep(2.2)  # past the kept answer
    assert _queue_figures(url) == (1.0, 1.0)
    (second,) = _metrics_connections(worker.pid)
    assert second != first
