"""scraping-service: create_app() for uvicorn (--factory)."""

from __future__ import annotations

from fastapi import FastAPI

from shared import create_service_app

from .internal_routes import replay_router
from .internal_routes import router as internal_router
from .keyvault import KeyVault
from .request_headers import HEADERS_PURPOSE
from .routes import router
from .settings import ScrapingSettings
from .worker import install_scrub_filter


def create_app(settings: ScrapingSettings | None = None) -> FastAPI:
    settings = settings or ScrapingSettings()
    from .worker import app as celery_app

    async def startup(app: FastAPI) -> None:
        install_scrub_filter()
        app.state.key_vault = KeyVault(app.state.redis, settings.secret_key, settings.scrape_key_ttl_seconds)
        app.state.header_vault = KeyVault(
            app.state.redis, settings.secret_key, settings.scrape_key_ttl_seconds, purpose=HEADERS_PURPOSE
        )

    return create_service_app(
        settings,
        routers=[router, internal_router, replay_router],
        celery_app=celery_app,
        on_startup=[startup],
    )
