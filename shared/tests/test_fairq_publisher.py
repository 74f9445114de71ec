"""The fair queue's Publisher against the real RabbitMQ: what it publishes is the message kombu's
producer pool sends for the same stored message (what the APIs published with before), each id comes back only once the broker confirmed it,
and a connection lost between batches is opened again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from kombu import Exchange, Queue

from shared import BaseServiceSettings, QueueName
from shared._celery import make_queue
from shared._fairq import _split, build_message
from shared._publisher import (
    PUBLISH_THREADS,
    Publisher,
    _opened,
    close_publishers,
    publish_in_thread,
    publish_stored,
)


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


def producer_pool_publish(app: Celery, raw: bytes) -> None:
    """The reference: a stored message published through kombu's producer pool."""
    meta, body = _split(raw)
    queue = meta["queue"]
    with app.producer_or_acquire() as producer:
        producer.publish(
            body,
            exchange=queue,
            routing_key=queue,
            content_type="application/json",
            content_encoding="utf-8",
            headers=meta["headers"],
            priority=meta["priority"],
            delivery_mode=2,
            declare=[app.amqp.queues[queue]],
            **meta["properties"],
        )


def test_same_message_as_the_producer_pool(app: Celery) -> None:
    _, raw_pool = message(app, priority=7)
    tid_ours, raw_ours = message(app, priority=7)
    producer_pool_publish(app, raw_pool)
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


def test_each_thread_publishes_on_its_own_publisher_and_all_close(app: Celery) -> None:
    """The APIs publish from anyio's worker threads: one Publisher (one connection) a thread."""
    import threading

    ids: list[list[str]] = []
    sent = [message(app) for _ in range(4)]
    before = len(_opened)

    def publish(part: list[tuple[str, bytes]]) -> None:
        ids.append(publish_stored(app, [raw for _, raw in part]))
        ids.append(publish_stored(app, []))  # nothing to send: nothing sent, nothing opened

    threads = [threading.Thread(target=publish, args=(sent[i : i + 2],)) for i in (0, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(tid for part in ids for tid in part) == sorted(tid for tid, _ in sent)
    assert len(received(app, 4)) == 4
    opened = _opened[before:]
    assert len(opened) == 2 and all(p._conn is not None for p in opened)  # one a thread
    close_publishers()
    assert all(p._conn is None for p in _opened)


@pytest.fixture
def full_queue(infra: Path, settings: BaseServiceSettings) -> Iterator[tuple[Celery, str]]:
    """An app whose queue holds one message and refuses more: RabbitMQ nacks what overflows."""
    name = f"publisher-test-full-{uuid.uuid4().hex[:8]}"
    celery = Celery("publisher-test-full", broker=settings.broker_url)
    queue = Queue(
        name,
        Exchange(name, type="direct", auto_delete=True),
        routing_key=name,
        auto_delete=True,
        queue_arguments={"x-max-length": 1, "x-overflow": "reject-publish"},
    )
    celery.conf.update(task_queues=[queue])
    yield celery, name
    with celery.connection_for_write() as conn:
        conn.default_channel.queue_delete(name)
        conn.default_channel.exchange_delete(name)


def three_for(celery: Celery, queue: str, prefix: str) -> list[bytes]:
    """Three messages for `queue`, with the ids prefix-0 to prefix-2."""
    return [
        build_message(
            celery,
            name="t",
            task_id=f"{prefix}-{i}",
            queue=queue,
            kwargs={},
            priority=0,
            kwargsrepr="{}",
            request_id=None,
        )
        for i in range(3)
    ]


def test_what_the_broker_nacks_is_not_returned_as_confirmed(
    full_queue: tuple[Celery, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A nack (here a full queue refusing publishes) leaves those ids out: they stay claimed in
    the fair queue for the pass to publish again, instead of being counted as sent."""
    celery, name = full_queue
    sent = three_for(celery, name, "nack")
    publisher = Publisher(celery)
    try:
        with caplog.at_level("WARNING", logger="shared.fairq"):
            assert publisher.publish(sent) == ["nack-0"]
        assert "the broker refused 2 publishes" in caplog.text
        with celery.connection_for_write() as conn:
            conn.default_channel.queue_purge(name)
        # The channel outlives a nack: the next batch goes out on it.
        channel = publisher._channel
        assert publisher.publish(sent[1:2]) == ["nack-1"] and publisher._channel is channel
    finally:
        publisher.close()


def test_a_connection_lost_in_the_middle_of_a_batch_republishes_what_was_not_confirmed(app: Celery) -> None:
    """The socket dies after five of twenty publishes: the batch goes out again on a new
    connection, every id comes back confirmed once, and each message reached the queue (the
    first five perhaps twice: delivery is at least once, and tasks are safe to run twice)."""
    publisher = Publisher(app)
    batch = [message(app) for _ in range(20)]
    channel = publisher._open()
    publish = channel.basic_publish
    calls = 0

    def publish_then_lose_the_socket(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 6:
            publisher._conn.connection.sock.close()  # type: ignore[union-attr]
        return publish(*args, **kwargs)

    channel.basic_publish = publish_then_lose_the_socket
    try:
        assert publisher.publish([raw for _, raw in batch]) == [tid for tid, _ in batch]
        assert publisher._channel is not channel  # a new connection carried the batch
    finally:
        publisher.close()
    with app.connection_for_write() as conn:
        got = []
        while (m := conn.default_channel.basic_get(QueueName.DEFAULT.value, no_ack=True)) is not None:
            got.append(m.properties["correlation_id"])
    assert set(got) == {tid for tid, _ in batch}
    assert 20 <= len(got) <= 25


async def test_an_api_process_publishes_on_at_most_publish_threads_connections(app: Celery) -> None:
    """Fifty submissions publishing at once share PUBLISH_THREADS threads, so at most that many
    broker connections (anyio's pool would have opened one in each of its 40 threads)."""
    before = len(_opened)
    sent = [message(app) for _ in range(50)]
    confirmed = await asyncio.gather(*(publish_in_thread(app, [raw]) for _, raw in sent))
    assert sorted(tid for ids in confirmed for tid in ids) == sorted(tid for tid, _ in sent)
    assert 1 <= len(_opened) - before <= PUBLISH_THREADS
    assert len(received(app, 50)) == 50
    close_publishers()
    assert all(p._conn is None for p in _opened)


def collect_all(publisher: Publisher, timeout: float = 10.0) -> list[str]:
    import time

    done: list[str] = []
    deadline = time.monotonic() + timeout
    while publisher.waiting and time.monotonic() < deadline:
        done += publisher.collect(0.2)
    return done


def test_send_without_waiting_then_collect_the_confirms(app: Celery) -> None:
    """The settler's way: send does not wait; collect(0) reads only earlier sends' confirms."""
    publisher = Publisher(app)
    try:
        first = [message(app) for _ in range(3)]
        publisher.send([raw for _, raw in first])
        assert publisher.waiting
        assert collect_all(publisher) == [tid for tid, _ in first]
        assert not publisher.waiting and publisher.collect(0.0) == []
        second, third = message(app), message(app)
        publisher.send([second[1]])
        publisher.send([third[1]])
        done = publisher.collect(0.0)  # at most the first of the two: the last send's is not read
        assert done in ([], [second[0]])
        assert done + collect_all(publisher) == [second[0], third[0]]
    finally:
        publisher.close()
    assert [m.properties["correlation_id"] for m in received(app, 5)] == [
        *(t for t, _ in first),
        second[0],
        third[0],
    ]


def test_send_on_a_lost_connection_publishes_again_what_was_not_confirmed(app: Celery) -> None:
    publisher = Publisher(app)
    try:
        tid, raw = message(app)
        publisher.send([raw])
        assert collect_all(publisher) == [tid]
        publisher._conn.connection.sock.close()  # type: ignore[union-attr]
        later = message(app)
        publisher.send([later[1]])  # the connection is found lost: opened again, sent on it
        assert collect_all(publisher) == [later[0]]
    finally:
        publisher.close()
    assert [m.properties["correlation_id"] for m in received(app, 2)] == [tid, later[0]]


def test_what_the_broker_nacks_after_a_send_is_not_collected(
    full_queue: tuple[Celery, str], caplog: pytest.LogCaptureFixture
) -> None:
    celery, name = full_queue
    sent = three_for(celery, name, "nack-send")
    publisher = Publisher(celery)
    try:
        with caplog.at_level("WARNING", logger="shared.fairq"):
            publisher.send(sent)
            assert collect_all(publisher) == ["nack-send-0"]
        assert "the broker refused" in caplog.text  # the two nacks may come in one read or two
        assert not publisher.waiting
    finally:
        publisher.close()


def test_a_confirm_read_during_a_send_is_kept_for_collect(app: Celery) -> None:
    """py-amqp reads what has arrived before each publish: a confirm read then is not lost."""
    import time

    publisher = Publisher(app)
    try:
        first, second = message(app), message(app)
        publisher.send([first[1]])
        time.sleep(0.3)  # its confirm is in by now
        publisher.send([second[1]])
        assert publisher.collect(0.0) == [first[0]]
        assert collect_all(publisher) == [second[0]]
    finally:
        publisher.close()
    assert len(received(app, 2)) == 2
