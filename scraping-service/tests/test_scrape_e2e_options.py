"""Issue 13's scraping options on the deployed shape: the API and worker as real processes,
real Redis and RabbitMQ, the local page server and the local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from kombu import Connection
from pdf_pages import make_pdf
from scrape_fakes import E2E_KEY, FakeOpenAI, PageServer
from test_scrape_e2e import _rabbitmqctl, _redis_dump, wait_done

from testkit import Stack

P = "/smart_application/tasks"
Auth = Callable[..., dict[str, str]]


async def submit(client: httpx.AsyncClient, auth_headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await client.post(f"{P}/background-scraping/", json=body, headers=auth_headers)
    assert r.status_code == 202, r.text
    accepted: dict[str, Any] = r.json()
    return accepted


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


async def test_header_values_are_never_readable_in_broker_redis_or_logs(
    scraping_client: httpx.AsyncClient,
    scraping_stack: Stack,
    e2e_pages: PageServer,
    e2e_openai: FakeOpenAI,
    auth: Auth,
) -> None:
    secret = f"hdr-SECRET-{uuid.uuid4().hex}"
    token = f"tok-SECRET-{uuid.uuid4().hex}"
    cookie = f"session={secret}"
    e2e_pages.member_cookies.add(cookie)
    queue = f"scrape-trace-{uuid.uuid4().hex[:8]}"
    vhost = os.environ["TEST_SESSION_VHOST"]
    _rabbitmqctl("trace_on", "-p", vhost)
    conn = Connection(os.environ["BROKER_URL"])
    channel = conn.channel()
    mark = len(e2e_pages.seen)
    try:
        channel.queue_declare(queue, durable=False, auto_delete=False)
        channel.queue_bind(queue, "amq.rabbitmq.trace", "#")
        h = auth("hana", "tasks scrape")
        members = f"{e2e_pages.base}/members?scan={uuid.uuid4().hex[:8]}"
        other = f"http://localhost:{e2e_pages.port}/members?away"
        accepted = await submit(
            scraping_client, h, url=members, openai_key=E2E_KEY, headers={"Cookie": cookie, "X-Token": token}
        )
        redirected = await submit(
            scraping_client,
            h,
            url=f"{e2e_pages.base}/to?u={other}",
            openai_key=E2E_KEY,
            headers={"Cookie": cookie, "X-Token": token},
        )
        echoed = await submit(
            scraping_client, h, url=f"{e2e_pages.base}/whoami", openai_key=E2E_KEY, headers={"Cookie": cookie}
        )
        done = await wait_done(scraping_stack, accepted["task_id"], h)
        assert done["status"] == "SUCCESS", done
        assert "Members-only appendix" in done["result"]["markdown"]
        careless = await wait_done(scraping_stack, echoed["task_id"], h)
        assert careless["status"] == "SUCCESS", careless
        # The page printed the cookie's value; the result store gets it masked.
        assert "Your session id is ***." in careless["result"]["markdown"]
        assert done["result"]["cache"] == {"page": False, "result": False}
        gone = await wait_done(scraping_stack, redirected["task_id"], h)
        assert gone["status"] == "FAILURE" and "401" in gone["error"]["message"]
        await asyncio.sleep(0.5)  # let the trace of the deliveries land
        captured: list[bytes] = []
        while (msg := channel.basic_get(queue, no_ack=True)) is not None:
            captured.append(bytes(msg.body))
            captured.append(repr(msg.properties).encode())
    finally:
        try:
            channel.queue_delete(queue)
        finally:
            channel.close()
            conn.release()
            _rabbitmqctl("trace_off", "-p", vhost)

    # The page server saw the cookie on the page's own origin, and not past the redirect away.
    seen = [(path, _lower(hs)) for path, hs in e2e_pages.seen[mark:] if path != "/robots.txt"]
    page = [hs for path, hs in seen if path.startswith("/members?scan=")]
    assert len(page) == 1 and page[0]["cookie"] == cookie and page[0]["x-token"] == token
    hop = [hs for path, hs in seen if path.startswith("/to?")]
    away = [hs for path, hs in seen if path == "/members?away"]
    assert hop and hop[0]["cookie"] == cookie
    assert away and "cookie" not in away[0] and "x-token" not in away[0]
    assert all("cookie" not in _lower(hs) for path, hs in e2e_pages.seen[mark:] if path == "/robots.txt")

    broker = b"\n".join(captured)
    assert accepted["task_id"].encode() in broker and b"headers_ref" in broker
    for value in (secret, token):
        assert value.encode() not in broker
    refs = set(re.findall(rb"kref_[A-Za-z0-9_-]{32,64}", broker))
    assert len(refs) == 6, refs  # a key and a headers reference per task

    stored = _redis_dump(os.environ["REDIS_URL"])
    assert stored
    for value in (secret, token):
        assert not [v for v in stored if value.encode() in v]
    for ref in refs:
        assert b"scrape:keyref:" + ref not in stored, "a secret's reference outlived its task"

    logs = "".join(p.log_text() for p in scraping_stack.procs)
    assert accepted["task_id"] in logs or "scraping.scrape_page" in logs
    assert secret not in logs and token not in logs

    async with httpx.AsyncClient(base_url=scraping_stack.urls["task"]) as client:
        for task in (accepted, echoed):
            status = await client.get(f"{P}/task-status/{task['task_id']}", headers=h)
            assert secret not in status.text and token not in status.text


async def test_pdf_selectors_and_cost_through_the_api(
    scraping_client: httpx.AsyncClient,
    scraping_stack: Stack,
    e2e_pages: PageServer,
    auth: Auth,
) -> None:
    h = auth("ivan", "tasks scrape")
    tag = uuid.uuid4().hex[:6]
    pdf_url = e2e_pages.add(
        f"report-{tag}.pdf",
        make_pdf([["Quarterly tidal output rose by a tenth."]], "Tidal Report"),
        "application/pdf",
    )
    pdf = await submit(scraping_client, h, url=pdf_url, openai_key=E2E_KEY, model="gpt-4o")
    narrowed = await submit(
        scraping_client,
        h,
        url=f"{e2e_pages.base}/article?sel={tag}",
        openai_key=E2E_KEY,
        model="gpt-4.1-mini",
        include_selectors=["article h2", "table"],
        exclude_selectors=["thead"],
    )
    done = await wait_done(scraping_stack, pdf["task_id"], h)
    assert done["status"] == "SUCCESS", done
    result = done["result"]
    assert result["title"] == "Tidal Report"
    assert result["markdown"] == "# Tidal Report\n\nQuarterly tidal output rose by a tenth."
    usage = result["usage"]
    assert usage["estimated_cost_usd"] == round(
        (usage["prompt_tokens"] * 2.50 + usage["completion_tokens"] * 10.00) / 1e6, 8
    )

    done = await wait_done(scraping_stack, narrowed["task_id"], h)
    assert done["status"] == "SUCCESS", done
    md = done["result"]["markdown"]
    assert "Barrages and lagoons" in md and "Sihwa Lake" in md
    assert "Capacity (MW)" not in md and "Tidal power turns the rise" not in md
    usage = done["result"]["usage"]
    assert usage["estimated_cost_usd"] == round(
        (usage["prompt_tokens"] * 0.40 + usage["completion_tokens"] * 1.60) / 1e6, 8
    )


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ({"include_selectors": ["div["]}, "invalid_selector", "include_selectors"),
        ({"exclude_selectors": ["   "]}, "invalid_selector", "exclude_selectors"),
        ({"include_selectors": ["p"] * 21}, "validation_error", "include_selectors"),
        ({"headers": {"Host": "internal"}}, "invalid_header", "Host"),
        ({"headers": {"Transfer-Encoding": "chunked"}}, "invalid_header", "Transfer-Encoding"),
        ({"headers": {"X-A": "line\r\nInjected: yes"}}, "invalid_header", "X-A"),
        ({"headers": {"Bad Name": "v"}}, "invalid_header", "Bad Name"),
        ({"headers": {f"X-{i}": "v" for i in range(11)}}, "validation_error", "headers"),
        ({"headers": {"Cookie": "c" * 5000}}, "validation_error", "Cookie"),
        ({"include_selectors": ["p" * 300]}, "validation_error", "include_selectors"),
    ],
)
async def test_invalid_selectors_and_headers_are_422_without_echoing_values(
    scraping_client: httpx.AsyncClient,
    e2e_pages: PageServer,
    auth: Auth,
    body: dict[str, Any],
    code: str,
    needle: str,
) -> None:
    payload = {"url": f"{e2e_pages.base}/article", "openai_key": E2E_KEY, **body}
    r = await scraping_client.post(f"{P}/background-scraping/", json=payload, headers=auth())
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == code and needle in err["message"], err
    assert "Injected" not in r.text and "c" * 100 not in r.text
    assert orjson.loads(r.content)["error"]["request_id"]
