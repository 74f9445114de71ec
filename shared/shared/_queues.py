"""Queue names: one per service, each owned by that service's Celery app."""

from __future__ import annotations

from enum import StrEnum


class QueueName(StrEnum):
    DEFAULT = "default"
    SCRAPING = "scraping"
    NOTIFICATIONS = "notifications"


# RabbitMQ priorities cost memory per level; 10 levels match the API's priority 0-9.
MAX_PRIORITY = 9
