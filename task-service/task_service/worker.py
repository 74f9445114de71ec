"""task-service's own Celery app, serving queue `default`.

Run: celery -A task_service.worker worker -Q default -n task@%h
"""

from __future__ import annotations

from shared import QueueName, install_worker_hooks, make_celery
from task_service.settings import TaskSettings

settings = TaskSettings()
app = make_celery("task-service", QueueName.DEFAULT, settings, include=["task_service.tasks"])
install_worker_hooks(app, QueueName.DEFAULT)
