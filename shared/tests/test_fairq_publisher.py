"""The fair queue's Publisher against the real RabbitMQ: what it publishes is the message the
producer pool's publish_messages sends, each id comes back only once the broker confirmed it,
and a connection lost between batches is opened again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from shared import BaseServiceSettings, QueueName
from shared._celery import make_queue
from shared._fairq import build_message, publish_messages
from shared._fairq_worker import Publisher


@pytest.fixture
def app(infra: Path, settings: BaseServiceSettings) -> Iterator[Celery]:
    # A bare app with the queue (make_celery would register a second callback task by name).
    celery = Celery("publisher-test", broker=settings.broker_url)
    celery.conf.update(
        task_queues=[make_queue(QueueName.DEFAULT)], broker_transport_options={"confirm_publish": True}
    )
    with celery.connection_for_write() as conn:
        celery.amqp.queues[QueueName.DEFAULT.value](conn.default_channel).declare()
        conn.default_channel.queue_purge(QueueName.DEFAULT.value)
    yield celery
    with celery.connection_for_write() as conn:
        conn.default_channel.queue_purge(QueueName.DEFAULT.value)


def message(app: Celery, priority: int = 5) -> tuple[str, bytes]:
    tid = str(uuid.uuid4())
    raw = build_message(
        app,
        name="tasks.run_background",
        task_id=tid,
        queue=QueueName.DEFAULT.value,
        kwargs={"task_type": "noop", "data": {"n": 1}},
        priority=priority,
        kwargsrepr="{}",
        request_id="req-1",
    )
    return tid, raw


def received(app: Celery, count: int) -> list[Any]:
    got = []
    with app.connection_for_write() as conn:
        for _ in range(count):
            m = conn.default_channel.basic_get(QueueName.DEFAULT.value, no_ack=True)
            assert m is not None
            got.append(m)
        assert conn.default_channel.basic_get(QueueName.DEFAULT.value, no_ack=True) is None
    return got


def test_same_message_as_the_producer_pool(app: Celery) -> None:
    tid_pool, raw_pool = message(app, priority=7)
    tid_ours, raw_ours = message(app, priority=7)
    assert publish_messages(app, [raw_pool]) == [tid_pool]
    publisher = Publisher(app)
    try:
        assert publisher.publish([raw_ours]) == [tid_ours]
    finally:
        publisher.close()
    pool, ours = received(app, 2)
    assert pool.body == ours.body
    assert ours.properties["application_headers"]["id"] == tid_ours
    assert ours.properties["correlation_id"] == tid_ours
    for props in (pool.properties, ours.properties):
        props["application_headers"] = {**props["application_headers"], "id": "", "root_id": ""}
        props["correlation_id"] = ""
    assert pool.properties == ours.properties
    assert ours.properties["delivery_mode"] == 2  # persistent
    assert ours.properties["priority"] == 7


def test_a_batch_confirmed_in_order_and_a_lost_connection_reopened(app: Celery) -> None:
    publisher = Publisher(app)
    try:
        batch = [message(app) for _ in range(20)]
        assert publisher.publish([raw for _, raw in batch]) == [tid for tid, _ in batch]
        # The broker drops the connection between batches (a restart, an idle timeout).
        publisher._conn.connection.sock.close()  # type: ignore[union-attr]
        tid, raw = message(app)
        assert publisher.publish([raw]) == [tid]
    finally:
        publisher.close()
    assert [m.properties["correlation_id"] for m in received(app, 21)] == [t for t, _ in batch] + [tid]
