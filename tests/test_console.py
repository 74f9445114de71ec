"""The web console at /console/, in a real browser: Debian's chromium driven by Playwright.

Real processes: the gateway, task-service with its worker, notification-service. The
browser talks only to the gateway on 127.0.0.1, as a user would. No browser is downloaded:
Playwright drives the system's /usr/bin/chromium (`make sysdeps` installs it).

Screenshots are kept at .run/artifacts/console*.png (gitignored) for a person to look at.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

import testkit
from testkit import Stack

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scraping-service/tests"))

from scrape_fakes import E2E_KEY, FakeOpenAI, PageServer  # noqa: E402

from notification_service.payloads import webpush_payload  # noqa: E402

ARTIFACTS = ROOT / ".run" / "artifacts"
P = "/smart_application/tasks"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# Recorded before any page script runs: every CSP violation the page reports to itself.
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


@pytest.fixture(scope="module")
def push_port() -> int:
    """A loopback port named in OUTBOUND_ALLOWLIST for the stubbed subscription's endpoint."""
    return testkit.free_port()


@pytest.fixture(scope="module")
async def third_parties() -> AsyncIterator[tuple[FakeOpenAI, PageServer]]:
    """An OpenAI-compatible API (reached by the real `openai` client) and a web site."""
    openai_server = await FakeOpenAI(api_key=E2E_KEY).start()
    pages = await PageServer().start()
    try:
        yield openai_server, pages
    finally:
        await pages.stop()
        await openai_server.stop()


@pytest.fixture(scope="module")
def console_stack(
    infra: Path, task_stack: Stack, push_port: int, third_parties: tuple[FakeOpenAI, PageServer]
) -> Iterator[Stack]:
    openai_server, pages = third_parties
    vhost = os.environ["TEST_SESSION_VHOST"] + "_console"  # no other test's worker takes these
    testkit.ensure_vhost(vhost)
    env = {
        **os.environ,
        "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        "OUTBOUND_ALLOWLIST": f"127.0.0.1:{push_port},127.0.0.1:{pages.port}",
        "OPENAI_BASE_URL": openai_server.base_url,
    }
    env.pop("OPENAI_API_KEY", None)
    stack = Stack(env, infra)
    try:
        notifications = stack.api("notification_service", "notifications")
        scraping = stack.api("scraping_service", "scraping")
        stack.worker("scraping_service.worker", "scraping", concurrency=1)
        stack.api(
            "gateway",
            "gateway",
            {
                "TASK_SERVICE_URL": task_stack.urls["task"],
                "NOTIFICATION_SERVICE_URL": notifications,
                "SCRAPING_SERVICE_URL": scraping,
            },
        )
        yield stack
    finally:
        stack.stop()
        testkit.delete_vhost(vhost)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), "chromium is missing: run `make sysdeps` (apt-get install chromium)"
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


class Session:
    """One browser context signed in as a fresh user, with what the page logged."""

    def __init__(self, context: BrowserContext, page: Page, base: str, sub: str, jwt: str) -> None:
        self.context, self.page, self.base, self.sub, self.jwt = context, page, base, sub, jwt
        self.console: list[str] = []
        self.errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _on_console(self, msg: ConsoleMessage) -> None:
        self.console.append(f"{msg.type}: {msg.text}")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.jwt}"}

    async def sign_in(self) -> None:
        await self.page.fill("#signin-token", self.jwt)
        await self.page.click("#signin-form button[type=submit]")
        await self.page.wait_for_selector("#nav", state="visible")

    async def check_clean(self) -> None:
        """No CSP violation (reported to the page or logged) and no uncaught error."""
        reported = await self.page.evaluate("window.__csp")
        logged = [m for m in self.console if "Content Security Policy" in m or "Refused to" in m]
        assert reported == [] and logged == [], (reported, logged)
        assert self.errors == [], self.errors


@pytest.fixture
async def session(
    browser: Browser, console_stack: Stack, token: Callable[..., str]
) -> AsyncIterator[Session]:
    base = console_stack.urls["gateway"]
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.add_init_script(WATCH_CSP)
    page = await context.new_page()
    sub = f"console-{uuid.uuid4().hex[:8]}"
    s = Session(context, page, base, sub, token(sub, "tasks scrape cache"))
    try:
        yield s
    finally:
        await context.close()


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    await page.screenshot(path=str(path), full_page=True)
    print(f"console screenshot: {path}")
    return path


# --- the static files -------------------------------------------------------------------------


async def test_console_files_are_served_without_a_token_with_strict_headers(console_stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=console_stack.urls["gateway"], timeout=10) as gw:
        index = await gw.get("/console/")
        bare = await gw.get("/console")  # the same page, answered directly: no redirect
        assert index.status_code == bare.status_code == 200
        assert index.content == bare.content and b'src="/console/app.js"' in index.content
        for r in (index, bare):
            assert r.headers["content-type"] == "text/html; charset=utf-8"
            assert r.headers["content-security-policy"] == CSP
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "no-referrer"
            assert r.headers["cache-control"] == "no-cache"
        for name, kind in [
            ("app.js", "text/javascript; charset=utf-8"),
            ("sw.js", "text/javascript; charset=utf-8"),
            ("console.css", "text/css; charset=utf-8"),
        ]:
            r = await gw.get(f"/console/{name}")
            assert r.status_code == 200 and r.headers["content-type"] == kind, name
            assert r.headers["content-security-policy"] == CSP
        # Read once at start, revalidated by ETag: an unchanged file costs a bodiless 304.
        cached = await gw.get("/console/console.css", headers={"If-None-Match": r.headers["etag"]})
        assert cached.status_code == 304 and cached.content == b""
        head = await gw.head("/console/")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(index.content))


@pytest.mark.parametrize(
    "path",
    [
        "/console/%2e%2e/%2e%2e/pyproject.toml",
        "/console/..%2f..%2fpyproject.toml",
        "/console/%2e%2e%2fapp.py",
        "/console/__init__.py",
        "/console//etc/passwd",
        "/console/static/app.js",
        "/console/missing.js",
    ],
)
async def test_console_serves_only_its_own_files(console_stack: Stack, path: str) -> None:
    async with httpx.AsyncClient(base_url=console_stack.urls["gateway"], timeout=10) as gw:
        r = await gw.get(httpx.URL(console_stack.urls["gateway"] + path))
        assert r.status_code == 404, (path, r.text[:200])
        err = r.json()["error"]
        assert err["code"] == "not_found" and err["request_id"] == r.headers["x-request-id"]


async def test_console_refuses_writes_with_405(console_stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=console_stack.urls["gateway"], timeout=10) as gw:
        r = await gw.post("/console/", content=b"x")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
        assert r.json()["error"]["code"] == "method_not_allowed"


# --- in the browser ---------------------------------------------------------------------------


async def test_console_shows_a_long_task_progress_live_and_cancels_it(session: Session) -> None:
    """Sign in with a minted token, start a long task with the console's form, watch its bar
    move (task-events over fetch), cancel it, see REVOKED; screenshots at 1280 and 375 px."""
    page = session.page
    response = await page.goto(f"{session.base}/console/")
    assert response is not None and response.headers["content-security-policy"] == CSP
    await session.sign_in()
    await page.click("#nav a[data-view=new]")
    await page.fill("#long-steps", "20")  # 10 s in all: time to see it move and cancel it
    await page.fill("#long-step-seconds", "0.5")
    await page.click("#long-submit")
    row = page.locator("#task-list li.task").first
    await row.wait_for()
    task_id = await row.get_attribute("data-task-id")
    assert task_id and await page.evaluate("location.hash") == "#tasks"
    bar = page.locator(f'li.task[data-task-id="{task_id}"] progress')

    seen: list[float] = []
    deadline = time.monotonic() + 20
    while sum(1 for a, b in itertools.pairwise(seen) if b > a) < 2:
        assert time.monotonic() < deadline, f"the bar did not move twice: {seen}"
        value = float(await bar.evaluate("el => el.value"))
        if not seen or value != seen[-1]:
            seen.append(value)
        await asyncio.sleep(0.1)
    assert seen == sorted(seen) and 0 < seen[-1] < 100, seen
    label = await page.locator(f'li.task[data-task-id="{task_id}"] .progress-label').inner_text()
    assert "/ 20" in label, label

    await page.click(f'li.task[data-task-id="{task_id}"] button.cancel')
    await page.wait_for_selector(f'li.task[data-task-id="{task_id}"][data-status="REVOKED"]', timeout=15000)
    assert await page.locator(f'li.task[data-task-id="{task_id}"] .status').inner_text() == "REVOKED"
    assert not await page.locator(f'li.task[data-task-id="{task_id}"] button.cancel').is_visible()
    async with httpx.AsyncClient(base_url=session.base, timeout=10) as gw:
        status = (await gw.get(f"{P}/task-status/{task_id}", headers=session.headers)).json()
    assert status["status"] == "REVOKED", status
    # Retry is offered only when the gateway serves POST /task-retry/{task_id} (being built):
    # the console asks the merged OpenAPI document, which lists the endpoints it has.
    async with httpx.AsyncClient(base_url=session.base, timeout=10) as gw:
        paths = (await gw.get("/openapi.json")).json()["paths"]
    retry_served = "post" in paths.get(f"{P}/task-retry/{{task_id}}", {})
    has = await page.evaluate(
        """async () => {
            const { hasEndpoint } = await import("/console/api.js");
            return [await hasEndpoint("POST", "/task-cancel/{task_id}"),
                    await hasEndpoint("POST", "/task-retry/{task_id}")];
        }"""
    )
    assert has == [True, retry_served]
    retry_button = page.locator(f'li.task[data-task-id="{task_id}"] button.retry')
    assert await retry_button.is_visible() == retry_served
    assert await page.locator("#retry-note").is_visible() == (not retry_served)

    shot = await screenshot(page, "console.png")
    assert shot.stat().st_size > 10_000
    await page.set_viewport_size({"width": 375, "height": 812})
    await page.wait_for_timeout(100)
    # Nothing wider than the screen at 375 px: no sideways scrolling.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    await screenshot(page, "console-375.png")
    await session.check_clean()


async def test_console_task_type_forms_come_from_task_types_and_run(session: Session) -> None:
    page = session.page
    await page.goto(f"{session.base}/console/#new")
    await session.sign_in()
    form = page.locator('form[data-task-type="text_analysis"]')
    await form.wait_for()
    prefilled = json.loads(await form.locator("textarea.data").input_value())
    assert prefilled == {"text": "", "top": 10, "words_per_minute": 230}  # from the input schema
    await form.locator("textarea.data").fill(json.dumps({"text": "The cat sat. The cat ran!", "top": 1}))
    await form.locator("button[type=submit]").click()
    row = page.locator("#task-list li.task").first
    await row.wait_for()
    task_id = await row.get_attribute("data-task-id")
    await page.wait_for_selector(f'li.task[data-task-id="{task_id}"][data-status="SUCCESS"]', timeout=15000)
    await page.locator(f'li.task[data-task-id="{task_id}"] button:has-text("Details")').click()
    result = page.locator(f'li.task[data-task-id="{task_id}"] .details pre')
    await result.wait_for()
    assert json.loads(await result.inner_text())["top_terms"] == [{"term": "cat", "count": 2}]

    # A refused submission shows the error envelope's message, code and request id.
    await page.click("#nav a[data-view=new]")
    await form.locator("textarea.data").fill(json.dumps({"top": 1}))
    await form.locator("button[type=submit]").click()
    error = form.locator(".form-error .error")
    await error.wait_for()
    assert await error.get_attribute("data-code") == "validation_error"
    assert "data.text" in await error.inner_text()
    assert len(await error.get_attribute("data-request-id") or "") >= 8
    assert "request id:" in await error.inner_text()
    await page.set_viewport_size({"width": 375, "height": 812})
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    await screenshot(page, "console-new-task-375.png")
    await session.check_clean()


async def test_console_inbox_is_live_and_the_cache_round_trips(session: Session) -> None:
    page = session.page
    await page.goto(f"{session.base}/console/#inbox")
    await session.sign_in()
    # A function, not an expression: Playwright polls an expression with eval, which the CSP refuses.
    await page.wait_for_function("() => document.getElementById('inbox-live').textContent === 'live'")
    title = '<img src=x onerror="window.__owned=1"> hello'
    async with httpx.AsyncClient(base_url=session.base, timeout=10) as gw:
        r = await gw.post(
            f"{P}/send-notification/",
            json={"user_id": session.sub, "title": title, "message": "from the test"},
            headers=session.headers,
        )
        assert r.status_code == 202, r.text
    nid = r.json()["notification_id"]
    item = page.locator(f'li[data-notification-id="{nid}"]')
    await item.wait_for(timeout=10000)  # pushed over the inbox stream, no reload
    assert await item.locator(".title").inner_text() == title  # shown as text, never as HTML
    assert await page.locator("#inbox-list img").count() == 0
    assert await page.evaluate("window.__owned") is None
    assert await page.locator("#unread").inner_text() == "1"

    await page.click("#nav a[data-view=cache]")
    await page.fill("#cache-key", "greeting")
    await page.fill("#cache-value", '{"hello": "console"}')
    await page.click("#cache-put")
    await page.wait_for_selector("#cache-result .ok")
    async with httpx.AsyncClient(base_url=session.base, timeout=10) as gw:
        stored = (await gw.get(f"{P}/cache/greeting", headers=session.headers)).json()
    assert stored["value"] == {"hello": "console"}
    await page.fill("#cache-value", "")
    await page.click("#cache-get")
    await page.wait_for_selector("#cache-result pre")
    assert json.loads(await page.input_value("#cache-value")) == {"hello": "console"}
    await page.click("#cache-delete")
    await page.wait_for_selector("#cache-result .ok")
    await page.click("#cache-get")
    error = page.locator("#cache-form .error")
    await error.wait_for()
    assert await error.get_attribute("data-code") == "cache_key_not_found"
    assert await error.get_attribute("data-request-id")

    # Signing out forgets the token and closes the inbox stream.
    assert await page.evaluate("Object.keys(sessionStorage)") == ["smartapp.token"]
    await page.click("#sign-out")
    await page.wait_for_selector("#view-signin", state="visible")
    assert await page.evaluate("sessionStorage.length") == 0
    assert await page.locator("#inbox-live").inner_text() == "offline"
    await page.reload()
    await page.wait_for_selector("#view-signin", state="visible")
    assert await page.locator("#nav").is_hidden()
    await session.check_clean()


MARKDOWN = """# Title <script>window.__owned=1</script>

A paragraph with **bold**, *em*, `code <b>` and [a link](https://example.com/a?b=1).
[bad](javascript:alert(1)) [data](data:text/html,<script>1</script>) ![pixel](https://t.example/p.png)
<img src=x onerror="window.__owned=2">

- one
- two with [rel](/relative)

1. first
2. second

```
<script>alert(1)</script>
```
"""


async def test_console_renders_markdown_as_a_safe_subset(session: Session) -> None:
    """The scrape view's renderer, run in the page on hostile markdown: text nodes only."""
    page = session.page
    await page.goto(f"{session.base}/console")  # no slash: the same page, its address then fixed
    assert await page.evaluate("location.pathname") == "/console/"
    shape: dict[str, Any] = await page.evaluate(
        """async (md) => {
            const { render } = await import("/console/markdown.js");
            const box = document.createElement("div");
            box.append(render(md));
            document.body.append(box);
            return {
                tags: [...box.querySelectorAll("*")].map((e) => e.tagName.toLowerCase()),
                hrefs: [...box.querySelectorAll("a")].map((a) => a.getAttribute("href")),
                h3: box.querySelector("h3").textContent,
                code: box.querySelector("pre code").textContent,
                text: box.textContent,
            };
        }""",
        MARKDOWN,
    )
    assert set(shape["tags"]) <= {"h3", "p", "strong", "em", "code", "a", "ul", "ol", "li", "pre"}, shape
    assert {"h3", "strong", "em", "ul", "ol", "pre", "a"} <= set(shape["tags"])
    assert shape["hrefs"] == ["https://example.com/a?b=1", "https://t.example/p.png"]
    assert shape["h3"] == "Title <script>window.__owned=1</script>"
    assert shape["code"] == "<script>alert(1)</script>"
    assert "[bad]" not in shape["text"] and "bad" in shape["text"]  # a javascript: link is plain text
    assert '<img src=x onerror="window.__owned=2">' in shape["text"]
    assert await page.evaluate("window.__owned") is None
    await session.check_clean()


# A PushManager that cannot reach a push service: subscribe() answers what a browser would,
# with a real P-256 key, and records how it was called.
STUB_PUSH = """
window.__subscribeCalls = [];
const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
PushManager.prototype.getSubscription = async function () { return null; };
PushManager.prototype.subscribe = async function (options) {
  window.__subscribeCalls.push({
    userVisibleOnly: options.userVisibleOnly,
    applicationServerKey: b64url(options.applicationServerKey),
  });
  const pair = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]);
  const p256dh = b64url(await crypto.subtle.exportKey("raw", pair.publicKey));
  const auth = b64url(crypto.getRandomValues(new Uint8Array(16)));
  const endpoint = `http://127.0.0.1:%PORT%/push/${crypto.randomUUID()}`;
  return { endpoint, toJSON: () => ({ endpoint, expirationTime: null, keys: { p256dh, auth } }) };
};
"""


async def test_console_enables_browser_notifications_up_to_the_device_registration(
    session: Session, push_port: int
) -> None:
    """No push service is reachable here, so `PushManager.subscribe` is stubbed (an init
    script): it returns a subscription with a real P-256 key and a loopback endpoint, and
    records its arguments. Everything else is real: the service worker is registered with
    scope /console/, the VAPID key comes from the gateway, and the console makes the
    `POST /devices/` a browser would; the device is then listed by `GET /devices/`. Then a
    push message is delivered to the worker through DevTools and its notification is shown."""
    page, context = session.page, session.context
    await context.grant_permissions(["notifications"], origin=session.base)
    await context.add_init_script(STUB_PUSH.replace("%PORT%", str(push_port)))
    await page.goto(f"{session.base}/console/#devices")
    await session.sign_in()
    await page.click("#push-enable")
    ok = page.locator("#push-state .ok")
    await ok.wait_for(timeout=15000)
    device_id = await ok.get_attribute("data-device-id")

    async with httpx.AsyncClient(base_url=session.base, timeout=10) as gw:
        vapid = (await gw.get(f"{P}/webpush/vapid-public-key")).json()["public_key"]
        devices = (await gw.get(f"{P}/devices/", headers=session.headers)).json()["devices"]
    calls = await page.evaluate("window.__subscribeCalls")
    assert calls == [{"userVisibleOnly": True, "applicationServerKey": vapid}]
    [device] = [d for d in devices if d["device_id"] == device_id]
    assert device["channel"] == "webpush" and device["status"] == "active"
    assert device["endpoint"].startswith(f"http://127.0.0.1:{push_port}/push/")
    await page.locator(f'#device-list li[data-device-id="{device_id}"]').wait_for()

    worker = await page.evaluate(
        """async () => {
            const reg = await navigator.serviceWorker.getRegistration("/console/");
            return { scope: reg.scope, script: reg.active.scriptURL };
        }"""
    )
    assert worker == {"scope": f"{session.base}/console/", "script": f"{session.base}/console/sw.js"}

    # The worker's `push` handler, fed through DevTools with the bytes notification-service
    # encrypts for a browser (RFC 8291 decryption is the browser's part, not tested here).
    payload = webpush_payload(
        notification_id="n-console-1",
        title="Build finished",
        message="All green <b>really</b>",
        data={"task_id": "t1"},
        created_at="2026-01-01T00:00:00Z",
    )
    cdp = await context.new_cdp_session(page)
    registrations: list[dict[str, Any]] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: registrations.extend(e["registrations"]))
    await cdp.send("ServiceWorker.enable")
    for _ in range(50):
        if registrations:
            break
        await asyncio.sleep(0.1)
    [registration] = [r for r in registrations if r["scopeURL"] == f"{session.base}/console/"]
    await cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": session.base, "registrationId": registration["registrationId"], "data": payload.decode()},
    )
    shown: list[list[str]] = []
    for _ in range(50):
        shown = await page.evaluate(
            """async () => {
                const reg = await navigator.serviceWorker.getRegistration("/console/");
                return (await reg.getNotifications()).map((n) => [n.title, n.body, n.tag]);
            }"""
        )
        if shown:
            break
        await asyncio.sleep(0.1)
    assert shown == [["Build finished", "All green <b>really</b>", "n-console-1"]]
    await session.check_clean()


HOSTILE_PAGE = """<!doctype html><html><head><title>Console scrape</title>
<script>window.__owned = 3</script></head><body><main><article>
<h1>Garden report</h1>
<p>Tomatoes did <strong>well</strong> this year; see <a href="https://example.org/tomatoes">the notes</a>
and <a href="javascript:alert(1)">this trick</a>.</p>
<ul><li>tomatoes</li><li>beans</li></ul>
<p>Written with &lt;care&gt; &amp; patience, over a long and sunny summer in the garden.</p>
</article></main></body></html>"""


async def test_console_scrapes_a_page_and_shows_markdown_and_extraction(
    session: Session, third_parties: tuple[FakeOpenAI, PageServer]
) -> None:
    """The scrape form through the real scraping-service and worker; the OpenAI-compatible
    API is a local stand-in reached by the real `openai` client, the page a local site."""
    _, pages = third_parties
    url = pages.add("garden", HOSTILE_PAGE)
    page = session.page
    await page.goto(f"{session.base}/console/#scrape")
    await session.sign_in()
    await page.fill("#scrape-url", url)
    await page.fill("#scrape-prompt", "The page's title")
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    await page.fill("#scrape-schema", json.dumps(schema))
    await page.fill("#scrape-key", E2E_KEY)
    await page.click("#scrape-form button[type=submit]")
    extraction = page.locator("#scrape-result .extraction pre")
    await extraction.wait_for(timeout=20000)
    assert json.loads(await extraction.inner_text()) == {"title": "x"}  # the stand-in's answer
    article = page.locator("#scrape-result article.markdown")
    assert "Garden report" in await article.locator("h3").first.inner_text()
    assert await article.locator("li").all_inner_texts() == ["tomatoes", "beans"]
    hrefs = await article.locator("a").evaluate_all("links => links.map((a) => a.href)")
    assert hrefs == ["https://example.org/tomatoes"], hrefs
    assert "<care>" in await article.inner_text()
    assert await page.evaluate("window.__owned") is None
    assert await page.input_value("#scrape-key") == E2E_KEY  # kept in the form, never stored
    assert E2E_KEY not in json.dumps(await page.evaluate("Object.entries(sessionStorage)"))
    await screenshot(page, "console-scrape.png")
    await session.check_clean()


async def test_console_creates_lists_resumes_and_deletes_a_schedule(session: Session) -> None:
    """The Schedules view against the real task-service: a paused every-60-s schedule made
    through the form is listed, resumed (PATCH) and deleted, each step checked on the API."""
    page = session.page
    await page.goto(f"{session.base}/console/#schedules")
    await session.sign_in()
    prefilled = json.loads(await page.input_value("#schedule-body"))
    assert prefilled == {"task_type": "data_processing", "data": {"input": "tick"}}
    await page.select_option("#schedule-path", "send-notification")
    assert json.loads(await page.input_value("#schedule-body"))["user_id"] == session.sub
    await page.select_option("#schedule-path", "background-task")

    # Refused: both cron and every_seconds; the envelope's code and request id are shown.
    await page.fill("#schedule-name", "console minutely")
    await page.fill("#schedule-cron", "* * * * *")
    await page.fill("#schedule-every", "60")
    await page.click("#schedule-form button[type=submit]")
    error = page.locator("#schedule-form .form-error .error")
    await error.wait_for()
    assert await error.get_attribute("data-code") == "invalid_schedule"
    assert len(await error.get_attribute("data-request-id") or "") >= 8

    await page.fill("#schedule-cron", "")
    await page.check("#schedule-paused")
    await page.click("#schedule-form button[type=submit]")
    row = page.locator("#schedule-list li.schedule").first
    await row.wait_for()
    sid = await row.get_attribute("data-schedule-id")
    assert sid and await row.get_attribute("data-paused") == "true"
    assert await row.locator(".name").inner_text() == "console minutely"
    assert "every 60 s" in await row.locator(".when").inner_text()
    assert await page.locator("#schedule-form .form-error .error").count() == 0
    async with httpx.AsyncClient(base_url=session.base, timeout=10) as gw:
        doc = (await gw.get(f"{P}/schedules/{sid}", headers=session.headers)).json()
    assert doc["paused"] is True and doc["every_seconds"] == 60 and doc["next_run_at"] is None
    assert doc["target"] == {"path": "background-task", "body": prefilled}

    await row.locator("button.toggle").click()
    await page.wait_for_selector(f'li.schedule[data-schedule-id="{sid}"][data-paused="false"]')
    async with httpx.AsyncClient(base_url=session.base, timeout=10) as gw:
        doc = (await gw.get(f"{P}/schedules/{sid}", headers=session.headers)).json()
    assert doc["paused"] is False and doc["next_run_at"] is not None
    await screenshot(page, "console-schedules.png")
    await page.set_viewport_size({"width": 375, "height": 812})
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    await page.set_viewport_size({"width": 1280, "height": 900})

    await page.locator(f'li.schedule[data-schedule-id="{sid}"] button.delete').click()
    await page.wait_for_selector(f'li.schedule[data-schedule-id="{sid}"]', state="detached")
    assert await page.locator("#schedules-empty").is_visible()
    async with httpx.AsyncClient(base_url=session.base, timeout=10) as gw:
        gone = await gw.get(f"{P}/schedules/{sid}", headers=session.headers)
    assert gone.status_code == 404
    await session.check_clean()


async def test_console_lists_only_your_cache_keys_a_page_at_a_time(
    session: Session, token: Callable[..., str]
) -> None:
    page = session.page
    other = {"Authorization": f"Bearer {token(f'other-{uuid.uuid4().hex[:8]}', 'cache')}"}
    async with httpx.AsyncClient(base_url=session.base, timeout=10) as gw:
        for key, ttl in [("list-a", 600), ("list-b", None), ("list-c", 600), ("zzz", 600)]:
            body: dict[str, Any] = {"value": {"k": key}} if ttl is None else {"value": {"k": key}, "ttl": ttl}
            r = await gw.put(f"{P}/cache/{key}", json=body, headers=session.headers)
            assert r.status_code in (200, 201), r.text
        r = await gw.put(f"{P}/cache/list-other", json={"value": 1, "ttl": 600}, headers=other)
        assert r.status_code in (200, 201), r.text
    await page.goto(f"{session.base}/console/#cache")
    await session.sign_in()
    # Shown on opening: every key of yours, none of another user's.
    await page.wait_for_selector('#cache-list li[data-key="zzz"]')
    keys = await page.locator("#cache-list li").evaluate_all("els => els.map((e) => e.dataset.key)")
    assert keys == ["list-a", "list-b", "list-c", "zzz"]

    # By prefix, two at a time: "More" follows next_cursor until the last page.
    await page.evaluate("document.getElementById('cache-list-form').dataset.pageSize = '2'")
    await page.fill("#cache-prefix", "list-")
    await page.click("#cache-list-form button[type=submit]")
    shown = "(n) => document.getElementById('cache-list').dataset.pages === n"
    await page.wait_for_function(shown, arg="1")
    assert await page.locator("#cache-list li").count() == 2
    more, pages = page.locator("#cache-more"), 1
    while await more.is_visible():
        assert pages < 5, "More never ran out"
        await more.click()
        pages += 1
        await page.wait_for_function(shown, arg=str(pages))
    keys = await page.locator("#cache-list li").evaluate_all("els => els.map((e) => e.dataset.key)")
    assert keys == ["list-a", "list-b", "list-c"] and pages >= 2
    meta = await page.locator('#cache-list li[data-key="list-a"] .meta').inner_text()
    assert meta.startswith("ttl ") and meta.endswith(" bytes"), meta
    assert 500 < int(meta.split()[1]) <= 600

    # Clicking a key loads it into the form.
    await page.click('#cache-list li[data-key="list-c"] button.key')
    await page.wait_for_selector("#cache-result pre")
    assert await page.input_value("#cache-key") == "list-c"
    assert json.loads(await page.input_value("#cache-value")) == {"k": "list-c"}
    await screenshot(page, "console-cache.png")
    await session.check_clean()
