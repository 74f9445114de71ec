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
from typing import TYPE_CHECKING, Any

import redis

from shared._fairq import (
    CONFIRM_POLL,
    CONFIRM_WITHIN,
    PASS_SECONDS,
    POP_ON_COMPLETE,
    SWEEP_EVERY,
    FairQueue,
)
from shared._publisher import Publisher

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger("shared.fairq")


def _publish_failed(publisher: Publisher, exc: Exception) -> None:
    # The broker: what was popped is left claimed, and the pass publishes it again later.
    log.warning("fair queue: publish failed, the pass will retry: %s", type(exc).__name__)
    publisher.close()


def _publish_and_confirm(publisher: Publisher, fq: FairQueue, messages: list[bytes]) -> None:
    if not messages:
        return
    done: list[str] = []
    try:
        done = publisher.publish(messages)
    except Exception as exc:
        _publish_failed(publisher, exc)
    finally:
        if done:
            fq.confirm(done)


class Settler:
    """Hands a finished task's turn on without keeping its pool process waiting.

    The pool process only queues the task id (or, when its end was written with the record,
    the messages popped then); a thread of that process records the ends and publishes what is
    next in turn while the process already runs its next task. It takes everything queued at
    once: the ends in one call, the publishes in one batch. It does not wait for the broker's
    confirms of a batch (Publisher.send): it reads those that have arrived when it next wakes,
    or within CONFIRM_POLL when nothing else comes (a busy worker publishes one message a task,
    and waiting for each confirm cost as much CPU as the publish). Confirmed publishes are
    recorded with the process's next call to Redis, or within CONFIRM_WITHIN seconds on their
    own. Ends not recorded when the process dies are found by the pass, and publishes never
    confirmed are published again by it.
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

    def _take(self, timeout: float) -> tuple[list[tuple[str, bool] | list[bytes]], bool]:
        """What is queued now (waiting up to `timeout` for the first), and whether to stop."""
        try:
            items = [self._q.get(timeout=timeout)]
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
            # Publishes waiting for their confirm: back soon for them if nothing else comes.
            items, stop = self._take(CONFIRM_POLL if self.publisher.waiting else CONFIRM_WITHIN)
            try:
                self._settle(items)
                # The confirms arrived since (those of an earlier batch, with a busy worker);
                # with nothing else to do, waiting a little for this batch's.
                self._confirmed(self.publisher.collect(0.0 if items or stop else CONFIRM_POLL))
                if stop:
                    self._confirmed(self.publisher.collect(CONFIRM_POLL * 10))
                self.fq.flush_confirms(CONFIRM_WITHIN if items else 0.0)
            except Exception:
                log.exception("fair queue: settling failed")
            if stop:
                self.publisher.close()
                return

    def _confirmed(self, ids: list[str]) -> None:
        if ids:
            self.fq.confirm_later(ids)

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
        if messages:
            try:
                self.publisher.send(messages)
            except Exception as exc:
                _publish_failed(self.publisher, exc)


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
