"""The outside world for `make test-compose`, inside the stack: no internet is needed.

One stdlib HTTP server (run in a container of the stack as `sink:8080`) playing three parts:
- a web page to scrape (GET /page; /robots.txt is absent, which allows everything);
- an OpenAI-compatible chat completions endpoint (POST /v1/chat/completions) giving a fixed
  summary, so scraping runs the real `openai` client end to end;
- a webhook receiver (POST /hook) that prints each delivery, headers and body, as one JSON line
  on stdout, for the check to verify its Standard Webhooks signature.
"""

from __future__ import annotations

import base64
import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE_TITLE = "Compose check page"
SUMMARY = "A page about the compose check, summarised by the stand-in model."
PAGE = f"""<!doctype html>
<html><head><title>{PAGE_TITLE}</title></head>
<body><main><h1>{PAGE_TITLE}</h1>
<p>This page is served inside the compose stack so that scraping needs no internet.</p>
<p>It has two paragraphs, enough text for the extractor to keep.</p></main></body></html>
"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: bytes = b"", content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, b"ok")
        elif self.path == "/page":
            self._send(200, PAGE.encode(), "text/html; charset=utf-8")
        else:
            self._send(404, b"not found")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/hook":
            record = {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": base64.b64encode(body).decode(),
            }
            print(json.dumps(record), flush=True)
            self._send(204)
        elif self.path == "/v1/chat/completions":
            request = json.loads(body)
            answer = {
                "id": "chatcmpl-compose-check",
                "object": "chat.completion",
                "created": 0,
                "model": request.get("model", "gpt-4o"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": SUMMARY},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 42, "completion_tokens": 12, "total_tokens": 54},
            }
            self._send(200, json.dumps(answer).encode(), "application/json")
        else:
            self._send(404, b"not found")

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


if __name__ == "__main__":
    # PID 1 in its container: without a handler SIGTERM is ignored and `down` waits it out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ThreadingHTTPServer(
        ("0.0.0.0", 8080), Handler
    ).serve_forever()  # all interfaces of its container: reached as sink:8080
