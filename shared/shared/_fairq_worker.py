"""Fair queues, the workers' side: hand a finished task's turn on, and the periodic pass.

A pool process only queues a finished task's id (Settler); threads of that process record
the end and publish what is next in turn. The pass (FairPump), a thread of each worker's main
process, keeps the heartbeat, moves due delayed tasks into their owners' turn, re-publishes
what a dead publisher left, and fills the window. The queue itself is in _fairq.py.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

import redis

from shared._fairq import (
    CONFIRM_WITHIN,
    PASS_SECONDS,
    POP_ON_COMPLETE,
    SWEEP_EVERY,
    FairQueue,
    publish_messages,
)

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger("shared.fairq")


def settle(app: Celery, fq: FairQueue, task_ids: list[str], *, finished: bool, later: bool = False) -> None:
    """Tasks left the window in this process: record it and publish what is next in turn."""
    try:
        nxt = fq.complete(task_ids, finished=finished, max_pop=max(POP_ON_COMPLETE, len(task_ids)))
    except redis.RedisError as exc:  # the pass finds the finished tasks within a minute
        log.warning("fair queue: could not record a task's end: %s", type(exc).__name__)
        return
    _publish_and_confirm(app, fq, nxt, later=later)


def _publish_and_confirm(app: Celery, fq: FairQueue, messages: list[bytes], *, later: bool = False) -> None:
    if not messages:
        return
    done: list[str] = []
    try:
        for raw in messages:  # one at a time: a failure leaves the rest claimed, for the pass
            done += publish_messages(app, [raw])
    except Exception as exc:  # the broker: left claimed, the pass re-publishes them later
        log.warning("fair queue: publish failed, the pass will retry: %s", type(exc).__name__)
    finally:
        if done and later:
            fq.confirm_later(done)
        elif done:
            fq.confirm(done)


class Settler:
    """Hands a finished task's turn on without keeping its pool process waiting.

    The pool process only queues the task id (or, when its end was written with the record,
    the messages popped then); threads of that process record the end and publish what is next
    in turn while the process already runs its next task. A publish waits for the broker's
    confirm (a disk write: milliseconds), so a few threads keep several publishes under way.
    Publishes are confirmed with the process's next call to Redis, or within CONFIRM_WITHIN
    seconds on their own. Ends not recorded when the process dies are found by the pass.
    """

    THREADS = 4

    def __init__(self, app: Celery, fq: FairQueue) -> None:
        self.app = app
        self.fq = fq
        self._q: queue.SimpleQueue[tuple[str, bool] | list[bytes] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"fair-queue-settle-{i}", daemon=True)
            for i in range(self.THREADS)
        ]
        for thread in self._threads:
            thread.start()

    def put(self, task_id: str, *, finished: bool) -> None:
        """A task left the window: record its end, then publish what is next in turn."""
        self._q.put((task_id, finished))

    def publish(self, messages: list[bytes]) -> None:
        """Messages popped with a task's end (FairQueue.end): publish them."""
        if messages:
            self._q.put(messages)

    def close(self, timeout: float = 5.0) -> None:
        for _ in self._threads:
            self._q.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(redis.RedisError):  # else the pass re-publishes them
            self.fq.flush_confirms(0.0)

    def _run(self) -> None:
        while True:
            try:
                item = self._q.get(timeout=CONFIRM_WITHIN)
            except queue.Empty:
                item = []
            if item is None:
                return
            try:
                if isinstance(item, tuple):
                    settle(self.app, self.fq, [item[0]], finished=item[1], later=True)
                else:
                    _publish_and_confirm(self.app, self.fq, item, later=True)
                self.fq.flush_confirms(CONFIRM_WITHIN if item else 0.0)
            except Exception:
                log.exception("fair queue: settling failed")


class FairPump(threading.Thread):
    """The periodic pass, in a worker's main process (a thread: the pass blocks on I/O)."""

    def __init__(self, app: Celery, fq: FairQueue, node: str, slots: int) -> None:
        super().__init__(name="fair-queue-pass", daemon=True)
        self.app = app
        self.fq = fq
        self.node = node
        self.slots = slots
        self._stop_event = threading.Event()
        self._passes = 0

    def run(self) -> None:
        while True:
            try:
                self.run_once()
            except Exception:
                log.exception("fair queue pass failed; next in %ss", PASS_SECONDS)
            if self._stop_event.wait(PASS_SECONDS):
                return

    def run_once(self) -> dict[str, Any]:
        self._passes += 1
        if self._passes % SWEEP_EVERY == 0:
            ended = self.fq.ended_in_flight()
            if ended:
                log.info("fair queue: %d in-flight tasks ended unseen", len(ended))
                _publish_and_confirm(self.app, self.fq, self.fq.complete(ended, finished=True))
        while True:
            summary, messages = self.fq.pump(self.node, self.slots)
            _publish_and_confirm(self.app, self.fq, messages)
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
