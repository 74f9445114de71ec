"""Local servers for the scraping tests and benchmark.

- PageServer: realistic pages, redirects, robots.txt, huge/slow/non-HTML bodies.
- FakeOpenAI: an OpenAI-compatible POST /v1/chat/completions (plain text and
  response_format json_schema), with usage, and scripted 401/429/500/slow answers. It is reached
  through the real `openai` client with base_url, so the wire protocol is the real one.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import scrape_pages as pages
from aiohttp import web

HUGE_BYTES = 8 * 1024 * 1024
# The key the end-to-end tests submit and then hunt for in the broker, Redis and the logs.
E2E_KEY = f"sk-e2e-SECRET-{uuid.uuid4().hex}"


class _Server:
    def __init__(self) -> None:
        self.app = web.Application()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.hits: list[str] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Self:
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(site.name.rsplit(":", 1)[1])
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class PageServer(_Server):
    """A small web site with realistic pages and awkward corners."""

    def __init__(self, robots: str | None = None) -> None:
        super().__init__()
        self.robots = (
            robots if robots is not None else ("User-agent: *\nDisallow: /private\nCrawl-delay: 0.2\n")
        )
        self.robots_status = 200
        self.extra: dict[str, tuple[int, str, bytes, dict[str, str]]] = {}
        # (path_qs, request headers) of every request, to see who was sent which header.
        self.seen: list[tuple[str, dict[str, str]]] = []
        # The Cookie values /members accepts; anything else gets a 401.
        self.member_cookies: set[str] = set()
        self.app.middlewares.append(self._count)
        r = self.app.router
        r.add_get("/robots.txt", self._robots)
        r.add_get("/article", self._html(pages.article_page()))
        r.add_get("/page/{i}", self._numbered)
        r.add_get("/long", self._html(pages.long_page()))
        r.add_get("/private/secret", self._html(pages.article_page()))
        r.add_get("/challenge", self._html(pages.CLOUDFLARE_CHALLENGE, status=403))
        r.add_get("/challenge200", self._html(pages.CLOUDFLARE_CHALLENGE))
        r.add_get("/shell", self._html(pages.JS_SHELL))
        r.add_get("/soft404", self._html(pages.SOFT_404))
        r.add_get("/xhtml", self._bytes(pages.XHTML_PAGE.encode(), "application/xhtml+xml"))
        r.add_get("/latin1", self._bytes(pages.LATIN1_PAGE, "text/html"))
        r.add_get("/text", self._bytes(pages.PLAIN_TEXT.encode(), "text/plain; charset=utf-8"))
        r.add_get("/data.json", self._bytes(pages.JSON_BODY, "application/json"))
        r.add_get("/image.png", self._bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png"))
        r.add_get("/huge", self._huge)
        r.add_get("/slow", self._slow)
        r.add_get("/missing", self._html(pages.SOFT_404, status=404))
        r.add_get("/busy", self._busy)
        r.add_get("/redirect/{n}", self._redirect)
        r.add_get("/to", self._redirect_to)
        r.add_get("/x/{name}", self._extra)
        r.add_get("/members", self._members)
        r.add_get("/whoami", self._whoami)

    @web.middleware
    async def _count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.hits.append(request.path_qs)
        self.seen.append((request.path_qs, dict(request.headers)))
        response: web.StreamResponse = await handler(request)
        return response

    def _html(self, body: str, status: int = 200) -> Callable[[web.Request], Any]:
        async def handler(_: web.Request) -> web.Response:
            return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

        return handler

    def _bytes(self, body: bytes, content_type: str) -> Callable[[web.Request], Any]:
        async def handler(_: web.Request) -> web.Response:
            return web.Response(body=body, headers={"Content-Type": content_type})

        return handler

    def add(
        self,
        name: str,
        body: str | bytes,
        content_type: str = "text/html; charset=utf-8",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> str:
        data = body.encode() if isinstance(body, str) else body
        self.extra[name] = (status, content_type, data, headers or {})
        return f"{self.base}/x/{name}"

    async def _extra(self, request: web.Request) -> web.Response:
        item = self.extra.get(request.match_info["name"])
        if item is None:
            raise web.HTTPNotFound()
        status, content_type, data, headers = item
        return web.Response(body=data, status=status, headers={"Content-Type": content_type, **headers})

    async def _members(self, request: web.Request) -> web.Response:
        """A page behind a login: the article only for a known session cookie."""
        if request.headers.get("Cookie", "") not in self.member_cookies:
            return web.Response(text="<h1>Please sign in</h1>", status=401, content_type="text/html")
        body = pages.article_page().replace("</article>", "<p>Members-only appendix.</p></article>")
        return web.Response(text=body, content_type="text/html", charset="utf-8")

    async def _whoami(self, request: web.Request) -> web.Response:
        """A careless page that prints the session cookie it was sent."""
        session = request.cookies.get("session", "none")
        body = pages.article_page().replace("</article>", f"<p>Your session id is {session}.</p></article>")
        return web.Response(text=body, content_type="text/html", charset="utf-8")

    async def _numbered(self, request: web.Request) -> web.Response:
        """The article with a line of its own, so every page has distinct content."""
        marker = f"<p>This is page number {request.match_info['i']} of the collection.</p>"
        body = pages.article_page().replace("</article>", marker + "</article>")
        return web.Response(text=body, content_type="text/html", charset="utf-8")

    async def _robots(self, _: web.Request) -> web.Response:
        return web.Response(text=self.robots, status=self.robots_status)

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        chunk = b"<p>" + b"x" * 65_530 + b"</p>"
        sent = 0
        try:
            while sent < HUGE_BYTES:
                await response.write(chunk)
                sent += len(chunk)
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        await response.write_eof()
        return response

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "5")))
        return web.Response(text=pages.article_page(), content_type="text/html")

    async def _busy(self, _: web.Request) -> web.Response:
        return web.Response(text="slow down", status=429, headers={"Retry-After": "2"})

    async def _redirect(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        target = "/article" if n <= 0 else f"/redirect/{n - 1}"
        raise web.HTTPFound(target)

    async def _redirect_to(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["u"])


# ------------------------------------------------------------------------------------------
# OpenAI-compatible server
# ------------------------------------------------------------------------------------------

Answerer = Callable[[dict[str, Any]], Any]


@dataclass
class Scripted:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def _first_page_line(content: str) -> str:
    m = re.search(r"<<<PAGE\n(.*?)\nPAGE>>>", content, re.S)
    text = m.group(1) if m else content
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:80]
    return ""


def default_schema_answer(request: dict[str, Any]) -> Any:
    """A value that conforms to the (strict) schema, built from the schema alone."""
    schema = request["response_format"]["json_schema"]["schema"]

    def build(node: dict[str, Any]) -> Any:
        if "anyOf" in node:
            return None
        t = node.get("type")
        if isinstance(t, list):
            t = next((x for x in t if x != "null"), "null")
        if "enum" in node:
            return node["enum"][0]
        if t == "object":
            return {k: build(v) for k, v in node.get("properties", {}).items()}
        if t == "array":
            return []
        if t == "string":
            return "x"
        if t in ("integer", "number"):
            return 0
        if t == "boolean":
            return False
        return None

    return build(schema)


class FakeOpenAI(_Server):
    def __init__(self, api_key: str = "sk-test-valid-key-0123456789abcdef") -> None:
        super().__init__()
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.script: list[Scripted] = []
        self.schema_answer: Answerer = default_schema_answer
        self.text_answer: Answerer | None = None
        self.finish_reason: Callable[[dict[str, Any]], str] = lambda _: "stop"
        self.request_times: list[float] = []
        self.app.router.add_post("/v1/chat/completions", self._chat)

    @property
    def base_url(self) -> str:
        return f"{self.base}/v1"

    async def _chat(self, request: web.Request) -> web.Response:
        self.request_times.append(time.monotonic())
        auth = request.headers.get("Authorization", "")
        body = await request.json()
        body["_auth"] = auth
        self.requests.append(body)
        if self.script:
            step = self.script.pop(0)
            if step.delay:
                await asyncio.sleep(step.delay)
            if step.status != 200:
                return web.json_response(step.body, status=step.status, headers=step.headers)
        presented = auth.removeprefix("Bearer ").strip()
        if presented != self.api_key:
            # The real API echoes (a masked form of) the key; we echo all of it, to prove that
            # our error messages scrub it.
            return web.json_response(
                {
                    "error": {
                        "message": f"Incorrect API key provided: {presented}. You can find "
                        "your API key at https://platform.openai.com/account/api-keys.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                },
                status=401,
            )
        messages = body.get("messages", [])
        user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        fmt = body.get("response_format")
        if fmt and fmt.get("type") == "json_schema":
            content = json.dumps(self.schema_answer(body))
        elif self.text_answer is not None:
            content = str(self.text_answer(body))
        elif "[Part 1]" in user:
            parts = re.findall(r"\[Part \d+\]\n(.*?)(?=\n\n\[Part \d+\]|\Z)", user, re.S)
            content = "COMBINED: " + " | ".join(p.strip() for p in parts)
        else:
            content = f"Summary of: {_first_page_line(user)}"
        prompt_tokens = sum(len(m["content"]) for m in messages) // 4
        completion_tokens = max(1, len(content) // 4)
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "gpt-4o"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "logprobs": None,
                        "finish_reason": self.finish_reason(body),
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    def fail(
        self,
        status: int,
        message: str = "boom",
        *,
        retry_after: str | None = None,
        code: str | None = None,
        times: int = 1,
        delay: float = 0.0,
    ) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        body = {"error": {"message": message, "type": "server_error", "code": code}}
        for _ in range(times):
            self.script.append(Scripted(status, body, headers, delay))

    def stall(self, seconds: float, times: int = 1) -> None:
        for _ in range(times):
            self.script.append(Scripted(200, {}, {}, seconds))
