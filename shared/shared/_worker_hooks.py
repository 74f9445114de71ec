"""What a worker process installs around the app: the signal hooks that keep the fair queue, the
metrics and the logs in step with Celery, and a faster decoder of the JSON messages.

The app and the task base class are in _celery.py.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import orjson
from celery import signals
from kombu.serialization import register
from kombu.utils import json as kombu_json

from shared._celery import _ENDED, _RETRYING, PlatformCelery
from shared._fairq_worker import FairPump
from shared._gc import tune_gc
from shared._metrics import start_worker_metrics
from shared._queues import QueueName
from shared._status import TERMINAL_STATUSES

log = logging.getLogger("shared.celery")

# kombu's own marker of the types its JSON encoder writes as objects (a datetime, a UUID...).
_KOMBU_TYPED = b'"__type__"'


def _loads_json(s: Any) -> Any:
    """kombu's JSON decoder, by orjson where that reads the same: 2 us against kombu's 30 us for
    a task message (measured), decoded twice per task (the main process reads the body to
    tell the protocol, the pool process to run it). A message with kombu's typed objects, or
    JSON orjson refuses (NaN, an integer past 64 bits), is kombu's to read, as before."""
    raw = s.encode() if isinstance(s, str) else bytes(s)
    if _KOMBU_TYPED not in raw:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return kombu_json.loads(s)


def install_json_decoder() -> None:
    """Replace the decoder of kombu's "json" serializer in this process (the encoder is kept)."""
    register("json", kombu_json.dumps, _loads_json, content_type="application/json", content_encoding="utf-8")


# A task that ends in one of these left the broker for good; RETRY means Celery published its
# next attempt itself (outside the fair window), so it frees only its place in the window.
_SETTLED_STATES = frozenset({*TERMINAL_STATUSES, "IGNORED", "REJECTED"})


def install_worker_hooks(app: PlatformCelery, queue: QueueName) -> None:
    from shared._logging import configure_worker_logging
    from shared._pool_guard import install_pool_fd_guard

    install_pool_fd_guard()  # a broker restart must not stop the worker (see _pool_guard)
    install_json_decoder()

    pump: dict[str, FairPump] = {}

    @signals.worker_init.connect(weak=False)
    def _init(**_: Any) -> None:
        start_worker_metrics(app.settings, queue)

    @signals.worker_process_init.connect(weak=False)
    def _pool_process(**_: Any) -> None:
        tune_gc()  # what the pool process inherited, out of the collector's sight

    @signals.worker_ready.connect(weak=False)
    def _ready(sender: Any = None, **_: Any) -> None:
        # The fair queue's pass runs in the main process, started once the pool has forked
        # (and once only: the consumer may become ready again after a broker reconnect).
        if "pass" in pump and pump["pass"].is_alive():
            return
        tune_gc()  # the main process (it consumes and dispatches every message), once
        slots = int(getattr(getattr(sender, "controller", None), "concurrency", 0) or 1)
        node = str(getattr(sender, "hostname", None) or f"{queue.value}@{os.getpid()}")
        pump["pass"] = FairPump(app, app.fairq, node, slots)
        pump["pass"].start()
        log.info("fair queue pass started: %s with %s slots", node, slots)

    @signals.worker_shutdown.connect(weak=False)
    def _shutdown(**_: Any) -> None:
        if "pass" in pump:
            pump.pop("pass").stop()
        app.close_settler()  # the main process's, if a revoked task made one

    @signals.task_postrun.connect(weak=False)
    def _postrun(sender: Any = None, task_id: str | None = None, state: str | None = None, **_: Any) -> None:
        if task_id and getattr(sender, "app", None) is app:
            if task_id in _ENDED:  # written with its final record
                _ENDED.discard(task_id)
                return
            retrying = task_id in _RETRYING
            _RETRYING.discard(task_id)
            app.settler.put(task_id, finished=state in _SETTLED_STATES and not retrying)

    @signals.task_revoked.connect(weak=False)
    def _revoked(request: Any = None, **_: Any) -> None:
        # A message dropped unrun (revoked by id): no postrun follows.
        tid = getattr(request, "id", None)
        if tid and getattr(getattr(request, "task", None), "app", app) is app:
            app.settler.put(tid, finished=True)

    @signals.setup_logging.connect(weak=False)
    def _logging(**_: Any) -> None:
        configure_worker_logging(app.settings.service_name + "-worker", app.settings.log_level)

    @signals.worker_process_shutdown.connect(weak=False)
    def _dead(pid: int | None = None, **_: Any) -> None:
        app.close_settler()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid or os.getpid())
