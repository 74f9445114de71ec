"""scraping-service's own Celery app, serving queue `scraping`.

Run: celery -A scraping_service.worker worker -Q scraping -n scraping@%h
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from shared import QueueName, install_worker_hooks, make_celery

from .keyvault import ScrubFilter
from .settings import ScrapingSettings

settings = ScrapingSettings()
app = make_celery("scraping-service", QueueName.SCRAPING, settings, include=["scraping_service.tasks"])
install_worker_hooks(app, QueueName.SCRAPING)


def install_scrub_filter() -> None:
    """Put the secret scrubber on every root handler, so no record escapes it."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())


@signals.setup_logging.connect(weak=False)
def _scrub_after_setup(**_: Any) -> None:
    # Connected after install_worker_hooks' receiver, so the handlers exist by now.
    install_scrub_filter()


@signals.worker_process_init.connect(weak=False)
def _scrub_in_child(**_: Any) -> None:
    install_scrub_filter()
