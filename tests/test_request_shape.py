"""Request shape and operations on the real platform: every API behind the real gateway.

No worker runs in this stack and it has no OUTBOUND_ALLOWLIST: whatever URL a request names
(a page to scrape, a webhook) is at most queued, never fetched, so generated requests reach
nothing but the loopback processes started here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

import testkit
from shared import mint_token
from testkit import Stack

P = "/smart_application/tasks"
ALL_SCOPES = "tasks scrape cache notify:send admin"


@pytest.fixture(scope="module")
def platform(infra: Path) -> Iterator[Stack]:
    vhost = os.environ["TEST_SESSION_VHOST"] + "_shape"
    testkit.ensure_vhost(vhost)
    env = {
        **os.environ,
        "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        "OUTBOUND_ALLOWLIST": "",
        "SCRAPE_ALLOW_PRIVATE": "false",
        "RATE_LIMIT_PER_MINUTE": "100000",
        "RATE_LIMIT_BURST": "10000",
    }
    # A server key, so a scrape without openai_key is accepted; no worker runs, so none is used.
    env["OPENAI_API_KEY"] = "sk-never-used-no-worker-runs-here"
    stack = Stack(env, infra)
    try:
        urls = {
            "SCRAPING_SERVICE_URL": stack.api("scraping_service", "scraping"),
            "NOTIFICATION_SERVICE_URL": stack.api("notification_service", "notifications"),
        }
        # task-service validates schedules of scrapes and notifications with those services.
        urls["TASK_SERVICE_URL"] = stack.api("task_service", "task", urls)
        metrics_port = testkit.free_port()
        stack.api("gateway", "gateway", {**urls, "GATEWAY_METRICS_PORT": str(metrics_port)})
        stack.urls["gateway_metrics"] = f"http://127.0.0.1:{metrics_port}"
        yield stack
    finally:
        stack.stop()
        testkit.delete_vhost(vhost)


@pytest.fixture
async def gw(platform: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.urls["gateway"], timeout=30) as client:
        yield client


def nested(depth: int) -> Any:
    """A value `depth` arrays/objects deep, alternating, so no shortcut counts it shallower."""
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def envelope(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    assert err["request_id"] and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err


async def test_json_deeper_than_32_levels_is_422_in_every_service(gw: httpx.AsyncClient, auth) -> None:
    h = auth("shape-deep", ALL_SCOPES)
    cases = [  # (method, path, body around a value, the levels that body adds)
        ("POST", "/background-task/", lambda d: {"task_type": "noop", "data": {"x": d}}, 2),
        (
            "POST",
            "/send-notification/",
            lambda d: {"user_id": "shape-deep", "title": "t", "message": "m", "data": {"x": d}},
            2,
        ),
        ("POST", "/background-scraping/", lambda d: {"url": "https://example.com/", "schema": {"x": d}}, 2),
        ("PUT", "/cache/deep", lambda d: {"value": d}, 1),
    ]
    for method, path, body, around in cases:
        # 32 levels in all pass the depth check (what the route then says is its own affair)...
        ok = await gw.request(method, P + path, json=body(nested(32 - around)), headers=h)
        assert ok.status_code < 500 and "json_too_deep" not in ok.text, (path, ok.text)
        # ...33 do not, nor does a body a parser would recurse 100,000 times into.
        for deep in (nested(33 - around), nested(500)):
            r = await gw.request(method, P + path, json=body(deep), headers=h)
            envelope(r, 422, "json_too_deep")
        raw = b"[" * 100_000 + b"]" * 100_000
        r = await gw.request(method, P + path, content=raw, headers={**h, "Content-Type": "application/json"})
        envelope(r, 422, "json_too_deep")


async def test_integers_past_64_bits_are_422_not_500(gw: httpx.AsyncClient, auth) -> None:
    h = auth("shape-int", ALL_SCOPES)
    huge = "18446744073709551616"  # 2**64: json.loads reads it, orjson cannot store it
    bodies = [
        (
            "/send-notification/",
            f'{{"user_id": "shape-int", "title": "t", "message": "m", "data": {{"n": {huge}}}}}',
        ),
        (
            "/batch-notifications/",
            f'{{"items": [{{"user_id": "u1", "title": "t", "message": "m", "data": {{"n": {huge}}}}}]}}',
        ),
        ("/background-task/", f'{{"task_type": "noop", "data": {{"n": [1, -{huge}]}}}}'),
    ]
    for path, body in bodies:
        r = await gw.post(P + path, content=body, headers={**h, "Content-Type": "application/json"})
        envelope(r, 422, "integer_out_of_range")
    # The same digits as a string, a float or an exponent are ordinary values.
    fine = f'{{"task_type": "noop", "data": {{"s": "{huge}", "f": {huge}.5, "e": 1e{huge[:3]}}}}}'
    r = await gw.post(
        P + "/background-task/", content=fine, headers={**h, "Content-Type": "application/json"}
    )
    assert r.status_code == 202, r.text


async def test_two_authorization_headers_are_400_at_the_gateway_and_at_a_service(
    platform: Stack, gw: httpx.AsyncClient, token
) -> None:
    alice, mallory = token("shape-alice", "tasks cache"), token("shape-mallory", "tasks cache")
    two = [("Authorization", f"Bearer {alice}"), ("Authorization", f"Bearer {mallory}")]
    r = await gw.get(f"{P}/cache/k", headers=two)
    envelope(r, 400, "duplicate_authorization")
    async with httpx.AsyncClient(base_url=platform.urls["task"]) as direct:
        envelope(await direct.get(f"{P}/cache/k", headers=two), 400, "duplicate_authorization")
    one = await gw.get(f"{P}/cache/k", headers={"Authorization": f"Bearer {alice}"})
    assert one.status_code == 404, one.text  # one header: an ordinary answer


async def test_oversized_headers_are_refused_not_500(gw: httpx.AsyncClient, auth) -> None:
    h = auth("shape-hdr", ALL_SCOPES)
    r = await gw.get(f"{P}/inbox/stream", headers={**h, "Last-Event-ID": "9" * 5000})
    envelope(r, 422)  # a seq number has at most 19 digits
    r = await gw.get(f"{P}/inbox/stream", headers={**h, "Last-Event-ID": b"\xb2"})
    envelope(r, 422)
    r = await gw.get(f"{P}/tasks/", headers={**h, "X-Anything": "a" * 9000})
    envelope(r, 431, "headers_too_large")


async def test_gateway_metrics_are_on_their_own_port_only(platform: Stack, gw: httpx.AsyncClient) -> None:
    assert (await gw.get("/health")).status_code == 200
    public = await gw.get("/metrics")
    envelope(public, 404, "not_found")
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{platform.urls['gateway_metrics']}/metrics")).text
    assert 'smartapp_http_requests_total{method="GET",route="/health",service="gateway",status="200"}' in text


class CountingTCPProxy:
    """A loopback TCP relay to RabbitMQ that counts the connections opened through it."""

    def __init__(self, target_port: int = 5672) -> None:
        self.target_port = target_port
        self.accepted = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> CountingTCPProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


async def test_ready_probes_in_a_row_open_at_most_one_broker_connection(infra: Path) -> None:
    proxy = await CountingTCPProxy().start()
    vhost = os.environ["TEST_SESSION_VHOST"]
    env = {
        **os.environ,
        "BROKER_URL": f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}",
        "READY_CACHE_SECONDS": "30",
    }
    port = testkit.free_port()
    # Started in a thread: the relay runs on this test's loop, which must keep turning meanwhile.
    api = await asyncio.to_thread(testkit.start_api, "task_service", port, env, infra)
    try:
        before = proxy.accepted
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            answers = [await client.get("/ready") for _ in range(40)]
        assert {a.status_code for a in answers} == {200}
        assert {a.json()["checks"]["rabbitmq"] for a in answers} == {"ok"}
        assert len({a.json()["checked_at"] for a in answers}) == 1
        assert proxy.accepted - before <= 1, proxy.accepted - before
    finally:
        await asyncio.to_thread(api.stop)
        await proxy.stop()


# --- schemathesis over the gateway's merged OpenAPI document ------------------------------------

MAX_EXAMPLES = int(os.environ.get("SHAPE_FUZZ_EXAMPLES", "6"))


def test_merged_openapi_covers_every_service(platform: Stack) -> None:
    doc = httpx.get(f"{platform.urls['gateway']}/openapi.json").json()
    paths = set(doc["paths"])
    for expected in ("/background-task/", "/background-scraping/", "/send-notification/", "/cache/{key}"):
        assert P + expected in paths, sorted(paths)


# Registering a webhook or push endpoint resolves its host name (the SSRF check); generated
# names would become DNS queries leaving this machine. They are pinned to an address literal
# first, which needs no resolution; nothing is ever sent to it, as no worker runs here.
PINNED_HOST = "1.1.1.1"
_URL_HOST = re.compile(r"^(https?://)[^/?#]*")


def pin_hosts(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: pin_hosts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [pin_hosts(v) for v in value]
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return _URL_HOST.sub(lambda m: m.group(1) + PINNED_HOST, value, count=1)
    return value


def test_generated_requests_get_no_server_error(platform: Stack, settings: Any) -> None:
    """schemathesis over the merged document, every operation, a token with all scopes.

    No 5xx but a deliberate 503 with Retry-After. Driven through hypothesis directly (one test,
    every operation) rather than schemathesis' pytest plugin, which does not run on pytest 9.
    """
    import hypothesis
    import schemathesis

    base = platform.urls["gateway"]
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    token = mint_token(settings, "schemathesis", ALL_SCOPES.split())
    failures: list[str] = []
    counts: dict[str, int] = {}
    statuses: dict[str, list[Any]] = {}
    session = requests.Session()
    session.trust_env = False  # loopback only: no proxy from the environment

    def probe(label: str, strategy: Any) -> Any:
        @hypothesis.given(case=strategy)
        @hypothesis.settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        def run(case: Any) -> None:
            counts[label] += 1
            # stream=True: an event stream answers its status at once and is then let go.
            kwargs = case.as_transport_kwargs(base_url=base, headers={"Authorization": f"Bearer {token}"})
            if "json" in kwargs:
                kwargs["json"] = pin_hosts(kwargs["json"])
            with session.request(**kwargs, stream=True, timeout=30, allow_redirects=False) as response:
                status = response.status_code
                statuses.setdefault(label, []).append(status)
                if status == 422 and os.environ.get("SHAPE_FUZZ_STATS"):
                    statuses.setdefault(label + " 422", []).append(response.text[:200])
                if status >= 500 and not (status == 503 and response.headers.get("Retry-After")):
                    failures.append(f"{label} {kwargs.get('url')}: {status} {response.text[:300]}")

        return run

    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        counts[label] = 0
        probe(label, operation.as_strategy())()
    if os.environ.get("SHAPE_FUZZ_STATS"):
        Path(os.environ["SHAPE_FUZZ_STATS"]).write_text(json.dumps(statuses, indent=1))
    assert len(counts) >= 25, sorted(counts)
    assert all(n > 0 for n in counts.values()), counts
    assert not failures, "\n".join(failures)
    # The schema states what the API checks: no operation refuses everything generated from it.
    refused_all = [k for k, v in statuses.items() if not k.endswith(" 422") and set(v) == {422}]
    assert not refused_all, refused_all
