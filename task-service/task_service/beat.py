"""The one beat for the platform: it schedules periodic tasks of every queue by name.

Run a single instance: celery -A task_service.beat beat
Beat only publishes messages, so it needs no service's task code, only names and queues.
"""

from __future__ import annotations

from shared import QueueName, make_celery
from task_service.settings import TaskSettings

settings = TaskSettings()
app = make_celery("beat", QueueName.DEFAULT, settings)
app.conf.beat_schedule = {
    "notifications-sweep-stuck": {
        "task": "notifications.sweep_stuck",
        "schedule": 60.0,
        "options": {"queue": QueueName.NOTIFICATIONS.value, "expires": 55},
    },
    "notifications-expire-records": {
        "task": "notifications.expire_records",
        "schedule": 3600.0,
        "options": {"queue": QueueName.NOTIFICATIONS.value, "expires": 3000},
    },
}
