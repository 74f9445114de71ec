"""The gateway's own endpoints: health, readiness of the whole platform, merged docs.

Metrics are not here: they are served on GATEWAY_METRICS_PORT (see __main__.py), an internal
port, so the public port never shows them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from gateway.openapi import OpenAPIMerger
from gateway.proxy import Upstreams
from gateway.routing import Service
from gateway.settings import GatewaySettings
from shared import CachedReadiness

router = APIRouter()


def json_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status_code, headers=headers, media_type="application/json"
    )


@router.get("/health", tags=["operations"])
async def health() -> dict[str, str]:
    """Alive: the gateway process answers."""
    return {"status": "ok", "service": "gateway"}


async def _service_ready(
    session: aiohttp.ClientSession | None, base_url: str, limit: float
) -> tuple[str, dict[str, Any] | None]:
    if session is None:
        return "unavailable: starting", None
    try:
        async with session.get(f"{base_url}/ready", timeout=aiohttp.ClientTimeout(total=limit)) as resp:
            body = await resp.json(content_type=None)
            state = "ok" if resp.status == 200 else f"unavailable: status {resp.status}"
            return state, body if isinstance(body, dict) else None
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return f"unavailable: {type(exc).__name__}", None


async def check_platform(app: Any) -> tuple[bool, dict[str, Any]]:
    settings: GatewaySettings = app.state.settings
    upstreams: Upstreams = app.state.upstreams
    timeout = settings.ready_timeout_seconds
    services: dict[Service, str] = app.state.services

    async def redis_check() -> str:
        try:
            answered = await asyncio.wait_for(app.state.redis.ping(), timeout=timeout)
        except Exception as exc:
            return f"unavailable: {type(exc).__name__}"
        return "ok" if answered else "unavailable: unexpected reply"

    results = await asyncio.gather(
        redis_check(), *(_service_ready(upstreams.session, url, timeout) for url in services.values())
    )
    checks: dict[str, str] = {"redis": results[0]}
    details: dict[str, Any] = {}
    rabbit: list[str] = []
    for service, (state, body) in zip(services, results[1:], strict=True):
        checks[str(service)] = state
        if body is not None:
            details[str(service)] = body
            broker = (body.get("checks") or {}).get("rabbitmq")
            if isinstance(broker, str):
                rabbit.append("ok" if broker == "ok" else f"{broker} (seen by {service})")
    if rabbit:
        bad = [r for r in rabbit if r != "ok"]
        checks["rabbitmq"] = bad[0] if bad else "ok"
    ok = all(v == "ok" for v in checks.values())
    body = {
        "status": "ready" if ok else "unavailable",
        "service": "gateway",
        "checks": checks,
        "services": details,
    }
    return ok, body


@router.get("/ready", tags=["operations"])
async def ready(request: Request) -> Response:
    """Ready: the three services, Redis, and RabbitMQ (as the services report it) answer.

    Answered from a check at most READY_CACHE_SECONDS old (`age_seconds`): probes cost the
    services and their dependencies nothing.
    """
    readiness: CachedReadiness = request.app.state.readiness
    ok, body = await readiness.get()
    return json_response(body, status_code=200 if ok else 503, headers={} if ok else {"Retry-After": "5"})


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request) -> Response:
    merger: OpenAPIMerger = request.app.state.openapi
    return json_response(await merger.document())


@router.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="smart_application API")
