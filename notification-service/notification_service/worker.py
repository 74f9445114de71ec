"""notification-service's own Celery app, serving queue `notifications`.

Run: celery -A notification_service.worker worker -Q notifications -n notify@%h
Periodic jobs (sweeper, record expiry) are scheduled by the platform's one beat.
"""

from __future__ import annotations

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
