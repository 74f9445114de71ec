"""A small HTTP server standing in for a service, to test the proxy's mechanics.

It records what it received (method, path, headers, body size) so tests can check what the
gateway forwarded, and offers slow, streaming and event-stream answers.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Seen:
    method: str
    path_qs: str
    headers: dict[str, list[str]]
    body_size: int


@dataclass
class StandInService:
    seen: list[Seen] = field(default_factory=list)
    events_closed: asyncio.Event = field(default_factory=asyncio.Event)
    event_gate: asyncio.Event = field(default_factory=asyncio.Event)
    openapi: dict[str, Any] | None = None
    ready_checks: dict[str, str] = field(default_factory=lambda: {"redis": "ok", "rabbitmq": "ok"})
    runner: web.AppRunner | None = None
    url: str = ""
    ready_calls: int = 0

    def last(self) -> Seen:
        return self.seen[-1]

    async def _record(self, request: web.Request) -> int:
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        self.seen.append(Seen(request.method, request.path_qs, headers, size))
        return size

    async def echo(self, request: web.Request) -> web.StreamResponse:
        size = await self._record(request)
        return web.json_response(
            {"method": request.method, "path": request.path_qs, "body_size": size},
            headers={"X-Upstream": "yes", "Connection": "close, X-Secret-Hop", "X-Secret-Hop": "1"},
        )

    async def ready(self, request: web.Request) -> web.StreamResponse:
        self.ready_calls += 1
        ok = all(v == "ok" for v in self.ready_checks.values())
        body = {"status": "ready" if ok else "unavailable", "checks": self.ready_checks}
        return web.json_response(body, status=200 if ok else 503)

    async def openapi_doc(self, request: web.Request) -> web.StreamResponse:
        if self.openapi is None:
            raise web.HTTPNotFound()
        return web.json_response(self.openapi)

    async def status(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        code = int(request.match_info["code"])
        body = {"error": {"code": "not_found", "message": "No such task.", "request_id": "r"}}
        return web.json_response(body, status=code)

    async def slow(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        await asyncio.sleep(float(request.query.get("s", "5")))
        return web.json_response({"slow": True})

    async def cookie(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        resp = web.json_response({"cookie": request.headers.get("Cookie")})
        resp.set_cookie("session", "for-one-user-only")
        return resp

    async def big(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(64):
            await resp.write(b"x" * 65536)
        await resp.write_eof()
        return resp

    async def events(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        try:
            await resp.write(b'event: progress\ndata: {"current": 1}\n\n')
            # The second event waits for the test: proves the first arrived on its own.
            await self.event_gate.wait()
            await resp.write(b'event: progress\ndata: {"current": 2}\n\n')
            if request.query.get("forever"):
                while True:
                    await asyncio.sleep(0.05)
                    await resp.write(b": keep-alive\n\n")
            await resp.write(b'event: status\ndata: {"status": "SUCCESS"}\n\n')
        except (ConnectionResetError, asyncio.CancelledError):
            self.events_closed.set()
            raise
        self.events_closed.set()
        return resp

    async def start(self) -> StandInService:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("GET", "/ready", self.ready)
        app.router.add_route("GET", "/openapi.json", self.openapi_doc)
        app.router.add_route("*", "/smart_application/tasks/status-{code:[0-9]+}", self.status)
        app.router.add_route("GET", "/smart_application/tasks/slow{tail:.*}", self.slow)
        app.router.add_route("GET", "/smart_application/tasks/cookie{tail:.*}", self.cookie)
        app.router.add_route("GET", "/smart_application/tasks/big{tail:.*}", self.big)
        app.router.add_route("GET", "/smart_application/tasks/task-events/{tail:.*}", self.events)
        app.router.add_route("GET", "/smart_application/tasks/inbox/stream{tail:.*}", self.events)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(self.runner, sock)
        await site.start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
