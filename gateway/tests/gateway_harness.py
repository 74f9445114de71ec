"""Running a gateway in the test's event loop, in front of stand-in or real services."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn

from gateway.app import Gateway
from gateway.settings import GatewaySettings
from shared import mint_token

SECRET = "gateway-tests-secret-0123456789abcdef"


@dataclass
class RunningGateway:
    url: str
    settings: GatewaySettings
    app: Gateway

    def token(self, sub: str | None = None, scopes: str = "tasks scrape cache", **kw: Any) -> str:
        return mint_token(self.settings, sub or f"user-{uuid.uuid4().hex[:8]}", scopes.split(), **kw)

    def auth(self, sub: str | None = None, scopes: str = "tasks scrape cache") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(sub, scopes)}"}


async def serve(app: Any, settings: GatewaySettings) -> tuple[str, uvicorn.Server, asyncio.Task[None]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # As shared.run_server configures it, minus the loop: the test's loop is already running.
    config = uvicorn.Config(
        app,
        lifespan="on",
        http="httptools",
        proxy_headers=False,
        server_header=False,
        access_log=False,
        log_config=None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, task


GatewayFactory = Callable[..., Awaitable[RunningGateway]]
