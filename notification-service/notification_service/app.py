"""notification-service: create_app() for uvicorn (--factory)."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from notification_service.devices import Devices
from notification_service.inbox import Inbox
from notification_service.internal_routes import router as internal_router
from notification_service.ledger import Ledger
from notification_service.preferences import PreferenceStore
from notification_service.routes_devices import router as devices_router
from notification_service.routes_inbox import router as inbox_router
from notification_service.routes_send import router as send_router
from notification_service.routes_status import router as status_router
from notification_service.settings import NotificationSettings
from notification_service.webpush import load_vapid_key
from shared import Allowlist, create_service_app

log = logging.getLogger(__name__)


def create_app(settings: NotificationSettings | None = None) -> FastAPI:
    settings = settings or NotificationSettings()
    from notification_service.worker import app as celery_app

    # Parsed now, so a bad OUTBOUND_ALLOWLIST stops the service at start, not at a request.
    allowlist = Allowlist.parse(settings.outbound_allowlist)

    async def startup(app: FastAPI) -> None:
        redis = app.state.redis
        app.state.allowlist = allowlist
        app.state.ledger = Ledger(redis, settings.notify_retention_seconds)
        app.state.inbox = Inbox(redis, settings.notify_retention_seconds, settings.notify_inbox_max_items)
        app.state.prefs = PreferenceStore(redis)
        app.state.devices = Devices(redis, settings.notify_max_devices_per_user, settings.secret_key)
        app.state.vapid = None
        try:
            app.state.vapid = await load_vapid_key(
                redis, settings.vapid_private_key, server_secret=settings.secret_key
            )
        except (RedisConnectionError, RedisTimeoutError):
            # Loaded on first use instead; the API still starts and answers 503 meanwhile.
            log.warning("Redis unavailable at start; the VAPID key will be loaded on first use")

    return create_service_app(
        settings,
        routers=[devices_router, send_router, status_router, inbox_router, internal_router],
        celery_app=celery_app,
        on_startup=[startup],
    )
