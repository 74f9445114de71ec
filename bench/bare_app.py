"""The baseline: a bare Celery app with default settings on the same broker and result store."""

from __future__ import annotations

import os
import time

from celery import Celery

app = Celery("bare", broker=os.environ["BROKER_URL"], backend=os.environ["REDIS_URL"])
app.conf.task_default_queue = "bare"
app.conf.worker_hijack_root_logger = False
app.conf.broker_connection_retry_on_startup = True


@app.task(name="bare.noop")
def noop(**kwargs: object) -> dict[str, object]:
    return {"echo": kwargs}


@app.task(name="bare.sleep")
def sleep(seconds: float) -> dict[str, float]:
    """The noisy-neighbour baseline: a task of known length that says when it started."""
    started = time.time()
    time.sleep(seconds)
    return {"started": started}
