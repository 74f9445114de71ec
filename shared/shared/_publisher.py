"""Publishing the fair queue's stored messages: one Publisher per thread, each with a broker
connection of its own, in confirm mode. `publish` awaits a batch's confirms together; `send`
does not wait, and `collect` reads the confirms later (a worker's settler, which publishes
one message at nearly every task's end).

Used by the workers (the settler and the pass: one Publisher each) and by the APIs (a
submission publishes what its script popped with `publish_in_thread`, on one of
PUBLISH_THREADS threads of the process, each with its Publisher: so an API process holds at
most that many broker connections, whatever its load). Why not kombu's producer pool and its
retrying publish: it waits for each message's confirm in turn and cost about 230 us of CPU a
message, against about 50 us a message in a batch here (RabbitMQ acks several at once).
Nearly every task's end publishes the next in turn, so in a worker that was most of a no-op
task's cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import amqp
import orjson

if TYPE_CHECKING:
    from celery import Celery
    from kombu import Connection

log = logging.getLogger("shared.fairq")

# Seconds a batch of publishes may wait for the broker's confirms before its connection is
# dropped (the messages not confirmed stay claimed: the pass re-publishes them).
CONFIRM_TIMEOUT = 10.0
# The threads an API publishes from, so its broker connections: a publish waits on the broker
# for about a millisecond, so a few threads carry thousands of submissions a second.
PUBLISH_THREADS = 8


CONNECTION_ERRORS = (*amqp.Connection.recoverable_connection_errors, OSError)


def _amqp_message(raw: bytes) -> tuple[str, str, amqp.Message]:
    """A stored message (build_message) as (task id, queue, the AMQP message to publish)."""
    meta, body = raw.split(b"\n", 1)
    m = orjson.loads(meta)
    msg = amqp.Message(
        body,
        content_type="application/json",
        content_encoding="utf-8",
        application_headers=m["headers"],
        priority=m["priority"],
        delivery_mode=2,
        **m["properties"],
    )
    return m["id"], m["queue"], msg


class Publisher:
    """Publishes the fair queue's stored messages on a broker connection of its own, with
    confirms, the confirms of a batch awaited together.

    Owned by one thread (see the module's docstring for why not kombu's producer pool). A
    lost connection is opened again once for the batch, and what it did not confirm is
    published again on the new one; what is still not confirmed is left claimed for the pass.
    """

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._conn: Connection | None = None
        self._channel: Any = None
        self._declared: set[str] = set()
        self._tags: dict[int, str] = {}  # delivery tag -> task id, not confirmed yet
        self._next_tag = 1
        self._done: list[str] = []
        self._nacked = 0
        # What `send` published and the broker has not confirmed yet (delivery tag -> the
        # message, to publish again on a new connection), and when the oldest was sent.
        self._unconfirmed: dict[int, tuple[str, str, amqp.Message]] = {}
        self._unconfirmed_since = 0.0
        self._last_send = 1  # the delivery tag of the last send's first publish

    def publish(self, messages: list[bytes]) -> list[str]:
        """Publish and wait for the broker's confirms; the ids confirmed (in order)."""
        if not messages:
            return []
        parsed = [_amqp_message(raw) for raw in messages]
        self._done, self._nacked = [], 0
        try:
            self._publish(parsed)
        except CONNECTION_ERRORS:  # the connection went: what it did not confirm, once more
            self.close()
            confirmed = set(self._done)
            self._publish([m for m in parsed if m[0] not in confirmed])
        if self._nacked:
            log.warning("fair queue: the broker refused %d publishes; the pass retries them", self._nacked)
        return self._done

    def send(self, messages: list[bytes]) -> None:
        """Publish without waiting for the confirms: `collect` gathers them later.

        For a stream of small batches (a worker's settler: nearly every task's end publishes
        one message), where waiting for each batch's confirm cost as much CPU as its publish.
        A lost connection is opened again once, and everything it did not confirm is
        published again on the new one. A Publisher is used either this way or by `publish`.
        """
        if not messages:
            return
        parsed = [_amqp_message(raw) for raw in messages]
        if not self._unconfirmed:
            self._unconfirmed_since = time.monotonic()
        sent = 0
        try:
            channel = self._open()
            self._last_send = self._next_tag
            for message in parsed:
                self._publish_one(channel, message, keep=True)
                sent += 1
        except CONNECTION_ERRORS:
            again = [*self._unconfirmed.values(), *parsed[sent:]]
            self.close()
            self._unconfirmed_since = time.monotonic()
            channel = self._open()
            self._last_send = self._next_tag
            for message in again:
                self._publish_one(channel, message, keep=True)

    def collect(self, timeout: float = 0.0) -> list[str]:
        """The ids `send` published that the broker confirmed since the last collect, waiting
        up to `timeout` for the first confirm. Those not confirmed within CONFIRM_TIMEOUT are
        given up (left claimed for the pass) with their connection.

        Confirms may also be read during a send (py-amqp reads what has arrived before each
        publish): they are kept for the next collect.
        """
        if self._unconfirmed and self._channel is not None:
            connection = self._channel.connection
            # Without a wait, the confirms of the earlier sends only: the last one's are not in
            # yet (a read that finds nothing costs as much as one that finds a confirm).
            until = self._last_send if timeout <= 0 else self._next_tag
            try:
                while self._unconfirmed and next(iter(self._unconfirmed)) < until:
                    connection.drain_events(timeout=timeout)
            except TimeoutError:
                pass
            except CONNECTION_ERRORS:  # left claimed: the pass publishes them again
                self.close()
        done, self._done = self._done, []
        nacked, self._nacked = self._nacked, 0
        if nacked:
            log.warning("fair queue: the broker refused %d publishes; the pass retries them", nacked)
        if self._unconfirmed and time.monotonic() - self._unconfirmed_since > CONFIRM_TIMEOUT:
            self.close()  # not confirmed: left claimed, and the connection is not trusted
        elif not self._unconfirmed:
            self._unconfirmed_since = time.monotonic()
        return done

    @property
    def waiting(self) -> bool:
        """Whether publishes made by `send` wait for their confirm."""
        return bool(self._unconfirmed)

    def _publish_one(
        self, channel: Any, message: tuple[str, str, amqp.Message], *, keep: bool = False
    ) -> None:
        task_id, q, msg = message
        if q not in self._declared:
            entity = self.app.amqp.queues.get(q)
            if entity is not None:
                entity(channel).declare()
            self._declared.add(q)
        channel.basic_publish(msg, exchange=q, routing_key=q)
        self._tags[self._next_tag] = task_id
        if keep:
            self._unconfirmed[self._next_tag] = message
        self._next_tag += 1

    def _publish(self, messages: list[tuple[str, str, amqp.Message]]) -> None:
        channel = self._open()
        for message in messages:
            self._publish_one(channel, message)
        deadline = time.monotonic() + CONFIRM_TIMEOUT
        while self._tags:
            left = deadline - time.monotonic()
            if left <= 0:  # not confirmed: left claimed, and the connection is not trusted
                self.close()
                return
            try:
                channel.connection.drain_events(timeout=left)
            except TimeoutError:
                continue

    def _open(self) -> Any:
        if self._channel is None:
            # Confirms are asked for on the channel here, not per publish by the transport.
            options = {**self.app.conf.broker_transport_options, "confirm_publish": False}
            conn = self.app.connection_for_write(transport_options=options)
            # As long as a publish from an API may wait for the broker (task_publish_retry_policy).
            conn.ensure_connection(**self.app.conf.task_publish_retry_policy)
            channel = conn.channel()
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            self._conn, self._channel = conn, channel
            self._tags, self._next_tag, self._declared = {}, 1, set()
        return self._channel

    def _confirmed(self, tag: int, multiple: bool) -> list[str]:
        tags = [t for t in self._tags if t <= tag] if multiple else [tag]
        for t in tags:
            self._unconfirmed.pop(t, None)
        return [tid for t in tags if (tid := self._tags.pop(t, None)) is not None]

    def _on_ack(self, tag: int, multiple: bool) -> None:
        self._done += self._confirmed(tag, multiple)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self._nacked += len(self._confirmed(tag, multiple))

    def close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        self._tags, self._unconfirmed = {}, {}
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.release()


_local = threading.local()
_opened: list[Publisher] = []  # every thread's, for close_publishers
_opened_lock = threading.Lock()


def publish_stored(app: Celery, messages: list[bytes]) -> list[str]:
    """Publish from any thread, on that thread's Publisher for `app`; the ids confirmed.

    What the broker did not confirm stays claimed in the fair queue: a worker's pass publishes
    it again. A broker that cannot be reached raises (CONNECTION_ERRORS, or kombu's
    OperationalError once task_publish_retry_policy is spent).
    """
    mine: dict[int, Publisher] | None = getattr(_local, "publishers", None)
    if mine is None:
        mine = _local.publishers = {}
    publisher = mine.get(id(app))
    if publisher is None:
        publisher = mine[id(app)] = Publisher(app)
        with _opened_lock:
            _opened.append(publisher)
    return publisher.publish(messages)


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


async def publish_in_thread(app: Celery, messages: list[bytes]) -> list[str]:
    """publish_stored on one of the process's PUBLISH_THREADS publishing threads."""
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(PUBLISH_THREADS, thread_name_prefix="publish")
    return await asyncio.get_running_loop().run_in_executor(_executor, publish_stored, app, messages)


def close_publishers() -> None:
    """Close every thread's Publisher (at shutdown, when no publish is under way). Each stays
    its thread's: used again, it opens a new connection, which the next call closes too."""
    with _opened_lock:
        publishers = list(_opened)
    for publisher in publishers:
        publisher.close()
