"""`python -m gateway`: uvicorn with uvloop and httptools; HOST, PORT and WEB_CONCURRENCY from settings."""

from __future__ import annotations

from gateway.settings import GatewaySettings
from shared import configure_logging, run_server


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings.service_name, settings.log_level)
    # proxy_headers stays off in run_server: the gateway handles X-Forwarded-* itself
    # (TRUST_FORWARDED_HEADERS), and uvicorn would otherwise believe them from any local peer.
    run_server("gateway.app:create_app", settings)


if __name__ == "__main__":
    main()
