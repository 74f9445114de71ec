"""Fair queues, the workers' side: hand a finished task's turn on, and the periodic pass.

A pool process only queues a finished task's id (Settler); a thread of that process records
the end and publishes what is next in turn. The pass (FairPump), a thread of each worker's main
process, keeps the heartbeat, moves due delayed tasks into their owners' turn, re-publishes
what a dead publisher left, and fills the window. Both publish through a Publisher of their
own. The queue itself is in _fairq.py.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

import amqp
import orjson
import redis

from shared._fairq import (
    CONFIRM_WITHIN,
    PASS_SECONDS,
    POP_ON_COMPLETE,
    SWEEP_EVERY,
    FairQueue,
)

if TYPE_CHECKING:
    from celery import Celery
    from kombu import Connection

log = logging.getLogger("shared.fairq")

# Seconds a batch of publishes may wait for the broker's confirms before its connection is
# dropped (the messages not confirmed stay claimed: the pass re-publishes them).
CONFIRM_TIMEOUT = 10.0


_CONNECTION_ERRORS = (*amqp.Connection.recoverable_connection_errors, OSError)


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

    Why not `publish_messages` (the producer pool, kombu's retrying publish): that waits for
    each message's confirm in turn and costs about 230 µs of CPU a message, most of a no-op
    task's cost in its pool process, since nearly every task's end publishes the next in
    turn. Here a batch goes out back to back on a channel in confirm mode and one wait collects
    the confirms (RabbitMQ acks several at once): about 50 µs a message. Only its own thread
    uses it. A lost connection is opened again once for the batch, and what it did not confirm
    published again on the new one; what is still not confirmed is left claimed for the pass,
    as before.
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

    def publish(self, messages: list[bytes]) -> list[str]:
        """Publish and wait for the broker's confirms; the ids confirmed (in order)."""
        if not messages:
            return []
        parsed = [_amqp_message(raw) for raw in messages]
        self._done, self._nacked = [], 0
        try:
            self._publish(parsed)
        except _CONNECTION_ERRORS:  # the connection went: what it did not confirm, once more
            self.close()
            confirmed = set(self._done)
            self._publish([m for m in parsed if m[0] not in confirmed])
        if self._nacked:
            log.warning("fair queue: the broker refused %d publishes; the pass retries them", self._nacked)
        return self._done

    def _publish(self, messages: list[tuple[str, str, amqp.Message]]) -> None:
        channel = self._open()
        for task_id, q, msg in messages:
            if q not in self._declared:
                entity = self.app.amqp.queues.get(q)
                if entity is not None:
                    entity(channel).declare()
                self._declared.add(q)
            channel.basic_publish(msg, exchange=q, routing_key=q)
            self._tags[self._next_tag] = task_id
            self._next_tag += 1
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
        return [tid for t in tags if (tid := self._tags.pop(t, None)) is not None]

    def _on_ack(self, tag: int, multiple: bool) -> None:
        self._done += self._confirmed(tag, multiple)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self._nacked += len(self._confirmed(tag, multiple))

    def close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        self._tags = {}
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.release()


def _publish_and_confirm(
    publisher: Publisher, fq: FairQueue, messages: list[bytes], *, later: bool = False
) -> None:
    if not messages:
        return
    done: list[str] = []
    try:
        done = publisher.publish(messages)
    except Exception as exc:  # the broker: left claimed, the pass re-publishes them later
        log.warning("fair queue: publish failed, the pass will retry: %s", type(exc).__name__)
        publisher.close()
    finally:
        if done and later:
            fq.confirm_later(done)
        elif done:
            fq.confirm(done)


class Settler:
    """Hands a finished task's turn on without keeping its pool process waiting.

    The pool process only queues the task id (or, when its end was written with the record,
    the messages popped then); a thread of that process records the ends and publishes what is
    next in turn while the process already runs its next task. It takes everything queued at
    once: the ends in one call, the publishes in one batch whose confirms are awaited together
    (Publisher), so one thread keeps up where each publish waited for its own confirm. Publishes
    are confirmed with the process's next call to Redis, or within CONFIRM_WITHIN seconds on
    their own. Ends not recorded when the process dies are found by the pass.
    """

    def __init__(self, app: Celery, fq: FairQueue) -> None:
        self.app = app
        self.fq = fq
        self.publisher = Publisher(app)
        self._q: queue.SimpleQueue[tuple[str, bool] | list[bytes] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="fair-queue-settle", daemon=True)
        self._thread.start()

    def put(self, task_id: str, *, finished: bool) -> None:
        """A task left the window: record its end, then publish what is next in turn."""
        self._q.put((task_id, finished))

    def publish(self, messages: list[bytes]) -> None:
        """Messages popped with a task's end (FairQueue.end): publish them."""
        if messages:
            self._q.put(messages)

    def close(self, timeout: float = 5.0) -> None:
        self._q.put(None)
        self._thread.join(timeout)
        with contextlib.suppress(redis.RedisError):  # else the pass re-publishes them
            self.fq.flush_confirms(0.0)

    def _take(self) -> tuple[list[tuple[str, bool] | list[bytes]], bool]:
        """What is queued now (waiting up to CONFIRM_WITHIN for the first), and whether to stop."""
        try:
            items = [self._q.get(timeout=CONFIRM_WITHIN)]
        except queue.Empty:
            return [], False
        while True:
            try:
                items.append(self._q.get_nowait())
            except queue.Empty:
                break
        return [item for item in items if item is not None], None in items

    def _run(self) -> None:
        while True:
            items, stop = self._take()
            try:
                self._settle(items)
                self.fq.flush_confirms(CONFIRM_WITHIN if items else 0.0)
            except Exception:
                log.exception("fair queue: settling failed")
            if stop:
                self.publisher.close()
                return

    def _settle(self, items: list[tuple[str, bool] | list[bytes]]) -> None:
        messages: list[bytes] = []
        ends: dict[bool, list[str]] = {}
        for item in items:
            if isinstance(item, tuple):
                ends.setdefault(item[1], []).append(item[0])
            else:
                messages += item
        for finished, ids in ends.items():
            try:
                messages += self.fq.complete(ids, finished=finished, max_pop=max(POP_ON_COMPLETE, len(ids)))
            except redis.RedisError as exc:  # the pass finds the finished tasks within a minute
                log.warning("fair queue: could not record a task's end: %s", type(exc).__name__)
        _publish_and_confirm(self.publisher, self.fq, messages, later=True)


class FairPump(threading.Thread):
    """The periodic pass, in a worker's main process (a thread: the pass blocks on I/O)."""

    def __init__(self, app: Celery, fq: FairQueue, node: str, slots: int) -> None:
        super().__init__(name="fair-queue-pass", daemon=True)
        self.app = app
        self.fq = fq
        self.node = node
        self.slots = slots
        self.publisher = Publisher(app)
        self._stop_event = threading.Event()
        self._passes = 0

    def run(self) -> None:
        while True:
            try:
                self.run_once()
            except Exception:
                log.exception("fair queue pass failed; next in %ss", PASS_SECONDS)
            if self._stop_event.wait(PASS_SECONDS):
                self.publisher.close()
                return

    def run_once(self) -> dict[str, Any]:
        self._passes += 1
        if self._passes % SWEEP_EVERY == 0:
            ended = self.fq.ended_in_flight()
            if ended:
                log.info("fair queue: %d in-flight tasks ended unseen", len(ended))
                _publish_and_confirm(self.publisher, self.fq, self.fq.complete(ended, finished=True))
        while True:
            summary, messages = self.fq.pump(self.node, self.slots)
            _publish_and_confirm(self.publisher, self.fq, messages)
            if summary.get("expired"):
                on_expired = getattr(self.app, "on_expired", None)
                if on_expired is not None:
                    on_expired([str(i) for i in summary["expired"]])
            if not summary.get("more_due"):
                return summary

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        with contextlib.suppress(redis.RedisError):  # else its heartbeat expires instead
            self.fq.pump(self.node, self.slots, leave=True)
