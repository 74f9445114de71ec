"""notification-service's own Celery app, serving queue `notifications`.

Run: celery -A notification_service.worker worker -Q notifications -n notify@%h
Periodic jobs (sweeper, record expiry) are scheduled by the platform's one beat.
"""

from __future__ import annotations

import gc
from typing import Any

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


@signals.worker_process_init.connect(weak=False)
def _freeze_startup_objects(**_: Any) -> None:
    """Keep the garbage collector off what a pool process inherits from its parent.

    Everything imported before the fork lives as long as the process; without this every
    full collection walks all of it, which at thousands of deliveries a second costs a
    tenth of the process's time (and touching it undoes the memory the fork shares).
    """
    gc.freeze()
