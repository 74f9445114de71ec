"""The web console's static files, served by the gateway at /console/.

The console is plain ES modules, HTML and CSS committed in `static/`: no node toolchain in
the images, nothing to rebuild, and the source a reviewer reads is what browsers run.

Files are read once, when the gateway starts, into a dict keyed by their name under
`static/`. A request is answered from that dict or not at all, so no request path ever
reaches the filesystem (no traversal, no symlink surprises, no stat per request). The
files need no token: they hold no data; every call they make carries the user's own.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

import orjson
from starlette.types import Receive, Scope, Send

from gateway.routing import RouteLabel
from shared import error_body

MOUNT = "/console"
STATIC_DIR = Path(__file__).parent / "static"
INDEX = "index.html"

# No inline script or style and no eval: an injected string can never run. The API is
# same-origin, so connect-src 'self' is all the console needs; data: images for icons.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
# Explicit types: mimetypes reads the host's /etc/mime.types, which differs between images.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
ROUTE = RouteLabel(f"{MOUNT}/{{path}}")


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: bytes


def load(directory: Path = STATIC_DIR) -> dict[str, StaticFile]:
    """Every regular file under `directory`, keyed by its POSIX path relative to it."""
    files: dict[str, StaticFile] = {}
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        body = path.read_bytes()
        content_type = CONTENT_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
        files[path.relative_to(directory).as_posix()] = StaticFile(
            body, content_type or "application/octet-stream", etag
        )
    return files


def is_console_path(path: str) -> bool:
    return path == MOUNT or path.startswith(MOUNT + "/")


class Console:
    """ASGI app for /console and everything below it (GET and HEAD only)."""

    def __init__(self, directory: Path = STATIC_DIR) -> None:
        self.files = load(directory)
        if INDEX not in self.files:
            raise RuntimeError(f"the console has no {INDEX} in {directory}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = ROUTE  # metrics label: a template, never the raw path
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await self._error(send, 405, "method_not_allowed", "The console is read-only.", allow=True)
            return
        # /console and /console/ both serve index.html itself: a redirect would drop nothing
        # today, but an answer needs no round trip. Pages refer to /console/... absolutely.
        path: str = scope["path"]
        name = path[len(MOUNT) :].lstrip("/") or INDEX
        found = self.files.get(name) if is_console_path(path) else None
        if found is None:
            await self._error(send, 404, "not_found", "No such console file.")
            return
        headers = [
            *SECURITY_HEADERS,
            (b"etag", found.etag),
            # Revalidate every time: a new gateway version serves new files at once, and a
            # matching ETag costs a 304 with no body.
            (b"cache-control", b"no-cache"),
        ]
        if_none_match = next((v for k, v in scope["headers"] if k == b"if-none-match"), None)
        if if_none_match is not None and found.etag in (t.strip() for t in if_none_match.split(b",")):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers += [
            (b"content-type", found.content_type.encode()),
            (b"content-length", str(len(found.body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else found.body})

    @staticmethod
    async def _error(send: Send, status: int, code: str, message: str, *, allow: bool = False) -> None:
        body = orjson.dumps(error_body(code, message))
        headers = [
            *SECURITY_HEADERS,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if allow:
            headers.append((b"allow", b"GET, HEAD"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
