"""Start a service's API under uvicorn (uvloop + httptools), processes from WEB_CONCURRENCY."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

from shared._settings import BaseServiceSettings


def run_server(
    factory: str, settings: BaseServiceSettings, before_start: Callable[[], None] | None = None
) -> None:
    """Serve `factory`; `before_start` runs in this (parent) process once the metrics mode is set."""
    import uvicorn

    if settings.web_concurrency > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Several processes: each writes its metrics to files that /metrics sums up.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"{settings.service_name}-metrics-")
    if before_start is not None:
        before_start()
    uvicorn.run(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.web_concurrency,
        loop="uvloop",
        http="httptools",
        log_config=None,  # the app logs JSON itself
        access_log=os.environ.get("ACCESS_LOG", "").lower() in {"1", "true"},
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
