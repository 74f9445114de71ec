"""notification-service's own Celery app, serving queue `notifications`.

Run: celery -A notification_service.worker worker -Q notifications -n notify@%h
Periodic jobs (sweeper, record expiry) are scheduled by the platform's one beat.
"""

from __future__ import annotations

import asyncio
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
