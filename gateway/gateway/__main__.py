"""`python -m gateway`: uvicorn with uvloop and httptools; HOST, PORT and WEB_CONCURRENCY from settings."""

from __future__ import annotations

import logging

from gateway.settings import GatewaySettings
from shared import configure_logging, metrics_registry, run_server

log = logging.getLogger("gateway")


def serve_metrics(settings: GatewaySettings) -> None:
    """Prometheus text on GATEWAY_METRICS_PORT, an internal port: the public one has no /metrics.

    Started in the parent process, so with WEB_CONCURRENCY > 1 it sums every worker's files.
    A port already taken costs the metrics, never the traffic: the gateway still starts.
    """
    from prometheus_client import start_http_server

    if not settings.gateway_metrics_port:
        return
    try:
        start_http_server(settings.gateway_metrics_port, addr=settings.host, registry=metrics_registry())
    except OSError as exc:
        log.error("gateway metrics port %s unavailable: %s", settings.gateway_metrics_port, exc)
        return
    log.info("gateway metrics on %s:%s", settings.host, settings.gateway_metrics_port)


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings.service_name, settings.log_level)
    # proxy_headers stays off in run_server: the gateway handles X-Forwarded-* itself
    # (TRUST_FORWARDED_HEADERS), and uvicorn would otherwise believe them from any local peer.
    run_server("gateway.app:create_app", settings, before_start=lambda: serve_metrics(settings))


if __name__ == "__main__":
    main()
