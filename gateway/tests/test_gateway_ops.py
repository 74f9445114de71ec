"""Operations: health, aggregated readiness, metrics, merged OpenAPI, the token command, routing."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import aiohttp
import pytest
from gateway_harness import SECRET, GatewayFactory, RunningGateway
from gateway_upstream import StandInService

from gateway.routing import RoutingTable, Service
from gateway.settings import GatewaySettings
from gateway.token import main as token_main
from shared import TokenVerifier, metrics_registry, render_metrics
from testkit import sample_value

API = "/smart_application/tasks"


async def test_health(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}/health") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok", "service": "gateway"}


async def test_ready_aggregates_services_redis_and_rabbitmq(
    start_gateway: GatewayFactory, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(ready_cache_seconds=0)  # every call checks afresh
    async with http.get(f"{gateway.url}/ready") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["status"] == "ready"
    assert body["checks"] == {
        "redis": "ok",
        "task-service": "ok",
        "scraping-service": "ok",
        "notification-service": "ok",
        "rabbitmq": "ok",
    }
    upstream.ready_checks["rabbitmq"] = "unavailable: OperationalError"
    async with http.get(f"{gateway.url}/ready") as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"]
        body = await resp.json()
    assert body["checks"]["rabbitmq"].startswith("unavailable")
    assert body["services"]["task-service"]["checks"]["rabbitmq"].startswith("unavailable")


async def test_ready_is_answered_from_one_check_within_the_cache_window(
    start_gateway: GatewayFactory, upstream: StandInService, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(ready_cache_seconds=30)
    bodies = []
    for _ in range(25):
        async with http.get(f"{gateway.url}/ready") as resp:
            assert resp.status == 200
            bodies.append(await resp.json())
    # One check of the three services (one stand-in answers for all three), reused 24 times.
    assert upstream.ready_calls == 3
    assert len({b["checked_at"] for b in bodies}) == 1
    assert bodies[-1]["age_seconds"] >= bodies[0]["age_seconds"]
    upstream.ready_checks["rabbitmq"] = "unavailable: OperationalError"
    async with http.get(f"{gateway.url}/ready") as resp:
        assert resp.status == 200  # still the recent result: a probe storm reaches nothing


async def test_public_port_has_no_metrics(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}/metrics") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"


async def test_ready_names_a_service_that_is_down(
    start_gateway: GatewayFactory, dead_url: str, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(scraping_service_url=dead_url)
    async with http.get(f"{gw.url}/ready") as resp:
        assert resp.status == 503
        body = await resp.json()
    assert body["checks"]["scraping-service"].startswith("unavailable")
    assert body["checks"]["task-service"] == "ok"


async def test_metrics_use_route_templates_not_raw_paths(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    before = render_metrics(metrics_registry())[0].decode()
    for key in ("secret-key-one", "secret-key-two"):
        async with http.get(f"{gateway.url}{API}/cache/{key}", headers=gateway.auth()) as resp:
            assert resp.status == 200
    async with http.get(f"{gateway.url}{API}/cache/x") as resp:
        assert resp.status == 401
    # The gateway runs in this process: read its registry as GATEWAY_METRICS_PORT would serve it.
    text = render_metrics(metrics_registry())[0].decode()
    assert (
        'smartapp_http_requests_total{method="GET",route="/smart_application/tasks/cache/{path}",'
        'service="gateway",status="200"}' in text
    )
    assert 'route="/smart_application/tasks/cache/{path}",service="gateway",status="401"' in text
    assert "secret-key-one" not in text
    # The metrics live in this test process (shared by every gateway it runs): count the
    # change these three requests made.
    route = {"service": "gateway", "method": "GET", "route": "/smart_application/tasks/cache/{path}"}

    def moved(name: str, **labels: str) -> float:
        return sample_value(text, name, {**route, **labels}) - sample_value(before, name, {**route, **labels})

    assert moved("smartapp_http_requests_total", status="200") == 2
    assert moved("smartapp_http_requests_total", status="401") == 1
    assert moved("smartapp_http_request_duration_seconds_count") == 3
    assert moved("smartapp_http_request_duration_seconds_bucket", le="+Inf") == 3


def service_doc(path: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "svc", "version": "1"},
        "paths": {
            path: {
                "post": {
                    "operationId": path.strip("/").replace("/", "_"),
                    "requestBody": {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Body"}}}
                    },
                    "responses": {"202": {"description": "accepted"}},
                }
            },
            "/health": {"get": {"responses": {"200": {"description": "ok"}}}},
        },
        "components": {"schemas": {"Body": schema, "Shared": {"type": "string"}}},
    }


async def test_openapi_merges_every_service_and_survives_one_down(
    start_gateway: GatewayFactory, dead_url: str, http: aiohttp.ClientSession
) -> None:
    tasks = await StandInService(
        openapi=service_doc(f"{API}/background-task/", {"type": "object", "title": "TaskBody"})
    ).start()
    notify = await StandInService(
        openapi=service_doc(f"{API}/send-notification/", {"type": "object", "title": "NotifyBody"})
    ).start()
    try:
        gw = await start_gateway(
            task_service_url=tasks.url, notification_service_url=notify.url, scraping_service_url=dead_url
        )
        async with http.get(f"{gw.url}/openapi.json") as resp:
            assert resp.status == 200
            doc = await resp.json()
        assert f"{API}/background-task/" in doc["paths"]
        assert f"{API}/send-notification/" in doc["paths"]
        assert "/health" in doc["paths"] and "/ready" in doc["paths"]  # the gateway's own
        assert doc["info"]["x-unavailable-services"] == ["scraping-service"]
        schemas = doc["components"]["schemas"]
        # Same name, different schema: the second one is renamed and its $refs follow it.
        assert schemas["Body"]["title"] == "TaskBody"
        assert schemas["NotificationService_Body"]["title"] == "NotifyBody"
        ref = doc["paths"][f"{API}/send-notification/"]["post"]["requestBody"]["content"]
        assert ref["application/json"]["schema"]["$ref"] == "#/components/schemas/NotificationService_Body"
        assert "NotificationService_Shared" not in schemas  # identical: kept once
        assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"

        async with http.get(f"{gw.url}/docs") as resp:
            assert resp.status == 200
            assert "swagger" in (await resp.text()).lower()
    finally:
        await tasks.stop()
        await notify.stop()


def test_token_command_mints_a_verifiable_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert token_main(["--sub", "alice", "--scopes", "tasks scrape cache", "--ttl", "120"]) == 0
    token = out.getvalue().strip()
    principal = TokenVerifier(GatewaySettings(jwt_secret=SECRET)).verify(token)
    assert principal.sub == "alice"
    assert principal.scopes == {"tasks", "scrape", "cache"}
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        token_main(["--sub", "alice", "--scopes", "tasks root"])


def test_routing_table() -> None:
    table = RoutingTable(
        GatewaySettings(
            task_service_url="http://t:1",
            scraping_service_url="http://s:2",
            notification_service_url="http://n:3/",
        )
    )
    cases = {
        f"{API}/background-task/": (Service.TASKS, f"{API}/background-task/"),
        f"{API}/background-task": (Service.TASKS, f"{API}/background-task/"),
        f"{API}/task-status/abc": (Service.TASKS, f"{API}/task-status/{{path}}"),
        f"{API}/cache/k": (Service.TASKS, f"{API}/cache/{{path}}"),
        f"{API}/cache": (Service.TASKS, f"{API}/cache/"),
        f"{API}/cache-batch/": (Service.TASKS, f"{API}/cache-batch/"),
        f"{API}/cache-batch": (Service.TASKS, f"{API}/cache-batch/"),
        f"{API}/something-new/x": (Service.TASKS, f"{API}/{{path}}"),
        f"{API}/background-scraping/": (Service.SCRAPING, f"{API}/background-scraping/"),
        f"{API}/webpush/vapid-public-key": (Service.NOTIFICATIONS, f"{API}/webpush/{{path}}"),
        f"{API}/batch-notifications/": (Service.NOTIFICATIONS, f"{API}/batch-notifications/"),
        f"{API}/inbox/stream": (Service.NOTIFICATIONS, f"{API}/inbox/{{path}}"),
    }
    for path, (service, label) in cases.items():
        matched = table.match(path)
        assert matched is not None, path
        assert (matched[0].service, matched[1].path) == (service, label), path
    for path in (f"{API}/cache", f"{API}/cache/k", f"{API}/cache-batch"):
        assert table.match(path)[0].scope == "cache", path  # type: ignore[index]
    batch = table.match(f"{API}/batch-notifications/")
    single = table.match(f"{API}/send-notification/")
    assert batch and single and batch[0].max_body > single[0].max_body
    assert table.match(f"{API}/send-notification/")[0].base_url == "http://n:3"  # type: ignore[index]
    for path in ("/health", "/smart_application/tasksx", f"{API}/cache/../x", f"{API}/./cache"):
        assert table.match(path) is None, path
