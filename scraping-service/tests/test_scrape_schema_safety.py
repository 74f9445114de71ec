"""Users' schemas never make us fetch and never make a worker backtrack (API.md "Fair share")."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web
from scrape_fakes import E2E_KEY, FakeOpenAI, PageServer
from test_scrape_e2e import P, submit, wait_done

from scraping_service.schema_validation import SchemaInvalidError, check_schema, validate
from testkit import Stack

Auth = Callable[..., dict[str, str]]
CATASTROPHIC = "^(a+)+b|a*$"  # exponential in Python's re on "aaaa...c"


class CountingServer:
    """A loopback server (outside OUTBOUND_ALLOWLIST) that counts every request it gets."""

    def __init__(self) -> None:
        self.hits = 0
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> CountingServer:
        async def any_path(_: web.Request) -> web.Response:
            self.hits += 1
            return web.json_response({"type": "string"})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", any_path)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


@pytest.fixture
async def counting_server() -> AsyncIterator[CountingServer]:
    server = await CountingServer().start()
    yield server
    await server.stop()


async def test_remote_ref_is_422_and_nothing_is_fetched(
    scraping_client: httpx.AsyncClient, e2e_pages: PageServer, counting_server: CountingServer, auth: Auth
) -> None:
    remote = f"{counting_server.base}/schema.json"
    schemas: list[dict[str, Any]] = [
        {"$ref": remote},
        {"type": "object", "properties": {"name": {"$ref": remote}}},
        {"type": "object", "properties": {"x": {"$ref": "other.json#/a"}}},
        {"$id": remote, "type": "object", "properties": {"y": {"$dynamicRef": "https://example.com/s"}}},
    ]
    for schema in schemas:
        body = {"url": f"{e2e_pages.base}/article", "openai_key": E2E_KEY, "schema": schema}
        r = await scraping_client.post(f"{P}/background-scraping/", json=body, headers=auth())
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["code"] == "invalid_schema" and "not local" in err["message"], err
    # The worker's validator refuses retrieval too, whatever reaches it.
    assert "nothing is fetched" in (validate({"name": "x"}, {"$ref": remote}) or "")
    assert counting_server.hits == 0


def test_catastrophic_pattern_is_matched_in_linear_time() -> None:
    schema = {"type": "string", "pattern": CATASTROPHIC}
    check_schema(schema)
    # Python's re would backtrack 2**100000 ways on the first branch; RE2 answers at once.
    assert validate("a" * 100_000 + "c", schema) is None
    no_b = {"type": "string", "pattern": "^(a+)+b$"}
    assert (
        validate("a" * 100_000 + "c", no_b) == f"at (root): {'a' * 100_000 + 'c'!r} does not match '^(a+)+b$'"
    )
    keyed = {
        "type": "object",
        "patternProperties": {"^(a+)+b$": {"type": "integer"}},
        "additionalProperties": False,
    }
    assert validate({"a" * 50_000 + "b": 1}, keyed) is None
    assert "unexpected" in (validate({"a" * 50_000 + "c": 1}, keyed) or "")


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "pattern": "(a)\\1"},
        {"type": "string", "pattern": "^(?=a)b"},
        {"type": "object", "patternProperties": {"(?<!x)y": {}}},
        {"type": "object", "properties": {"n": {"type": "string", "pattern": "(?P<w>a)(?P=w)"}}},
    ],
)
def test_patterns_re2_cannot_compile_are_refused(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaInvalidError, match=r"regex|RE2"):
        check_schema(schema)


async def test_backreference_pattern_is_422_at_the_api(
    scraping_client: httpx.AsyncClient, e2e_pages: PageServer, auth: Auth
) -> None:
    schema = {"type": "object", "properties": {"twice": {"type": "string", "pattern": "(ab)\\1"}}}
    body = {"url": f"{e2e_pages.base}/article", "openai_key": E2E_KEY, "schema": schema}
    r = await scraping_client.post(f"{P}/background-scraping/", json=body, headers=auth())
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_schema", r.text


async def test_worker_matches_the_models_answer_with_re2(
    scraping_client: httpx.AsyncClient,
    scraping_stack: Stack,
    e2e_pages: PageServer,
    e2e_openai: FakeOpenAI,
    auth: Auth,
) -> None:
    h = auth("re2-user", "tasks scrape")
    code = "a" * 20_000 + "c"
    e2e_openai.schema_answer = lambda _: {"code": code}
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": CATASTROPHIC}}}
    accepted = await submit(
        scraping_client,
        h,
        url=f"{e2e_pages.base}/article",
        openai_key=E2E_KEY,
        model="gpt-4o-mini",
        prompt=f"Which code? {uuid.uuid4().hex}",
        schema=schema,
    )
    done = await wait_done(scraping_stack, accepted["task_id"], h)
    assert done["status"] == "SUCCESS", done
    assert done["result"]["extraction"] == {"code": code}
