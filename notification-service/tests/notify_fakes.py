"""Local stand-ins for the third parties: a Web Push service (the test plays the browser)
and a Standard Webhooks receiver. Both speak the real protocol and check it strictly:
anything a real push service or receiver would refuse is refused here and recorded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared import webhooks


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Scripted:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Browser:
    """A subscribed browser: its own P-256 key pair and 16-byte auth secret."""

    token: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    received: list[bytes] = field(default_factory=list)
    # Topic header of each delivered message, in order.
    topics: list[str | None] = field(default_factory=list)
    urgencies: list[str | None] = field(default_factory=list)
    ttls: list[int] = field(default_factory=list)

    @property
    def p256dh(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def subscription(self) -> dict[str, Any]:
        """What PushSubscription.toJSON() gives a web page."""
        return {
            "endpoint": self.endpoint,
            "keys": {"p256dh": b64url(self.p256dh), "auth": b64url(self.auth)},
        }


class FakePushService:
    """An RFC 8030 push service on 127.0.0.1 that checks RFC 8291 and RFC 8292 like a real one."""

    def __init__(self, *, expected_public_key: str | None = None) -> None:
        self.expected_public_key = expected_public_key
        self.browsers: dict[str, Browser] = {}
        self.scripts: dict[str, deque[Scripted]] = defaultdict(deque)
        self.attempts: Counter[str] = Counter()
        self.rejections: list[str] = []
        self.delay_seconds = 0.0
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/push/{token}", self._push)
        self.app = app

    async def start(self) -> FakePushService:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def origin(self) -> str:
        return self.base_url

    def new_browser(self) -> Browser:
        token = secrets.token_urlsafe(12)
        browser = Browser(
            token=token,
            endpoint=f"{self.base_url}/push/{token}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth=secrets.token_bytes(16),
        )
        self.browsers[token] = browser
        return browser

    def script(self, browser: Browser, *answers: Scripted) -> None:
        """Answer the next pushes to this browser with these, then 201 again."""
        self.scripts[browser.token].extend(answers)

    def _reject(self, status: int, reason: str) -> web.Response:
        self.rejections.append(reason)
        return web.json_response({"code": status, "errno": 109, "error": reason}, status=status)

    def _check_vapid(self, header: str) -> str | None:
        """RFC 8292: `vapid t=<jwt>, k=<key>`; the JWT verifies under k, aud is our origin."""
        if not header.startswith("vapid "):
            return "Authorization is not the vapid scheme"
        params: dict[str, str] = {}
        for part in header[len("vapid ") :].split(","):
            name, _, value = part.strip().partition("=")
            params[name.strip()] = value.strip()
        token, key_text = params.get("t"), params.get("k")
        if not token or not key_text:
            return "vapid needs t= and k="
        try:
            raw_key = unb64url(key_text)
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw_key)
        except ValueError:
            return "k= is not a P-256 point"
        if self.expected_public_key is not None and key_text != self.expected_public_key:
            return "k= is not the key the browser subscribed with"
        try:
            header_fields = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                public_key,
                algorithms=["ES256"],
                audience=self.origin,
                options={"require": ["exp", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            return f"JWT refused: {type(exc).__name__}"
        if header_fields.get("alg") != "ES256":
            return "JWT alg is not ES256"
        if claims["exp"] > time.time() + 24 * 3600:
            return "JWT exp is more than 24 hours ahead"
        sub = str(claims["sub"])
        if not (sub.startswith("mailto:") or sub.startswith("https://")):
            return "JWT sub is not mailto: or https:"
        return None

    async def _push(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        self.attempts[token] += 1
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        problem = self._check_vapid(request.headers.get("Authorization", ""))
        if problem is not None:
            return self._reject(401, problem)
        ttl_text = request.headers.get("TTL")
        if ttl_text is None or not ttl_text.isdigit():
            return self._reject(400, "TTL header missing or not a number")
        urgency = request.headers.get("Urgency")
        if urgency is not None and urgency not in {"very-low", "low", "normal", "high"}:
            return self._reject(400, "bad Urgency")
        topic = request.headers.get("Topic")
        if topic is not None and (len(topic) > 32 or not topic.replace("-", "").replace("_", "").isalnum()):
            return self._reject(400, "bad Topic")
        body = await request.read()
        if len(body) > 4096:
            return self._reject(413, "body larger than 4096 bytes")
        browser = self.browsers.get(token)
        if browser is None:
            return web.Response(status=404)
        if self.scripts[token]:
            answer = self.scripts[token].popleft()
            return web.Response(status=answer.status, headers=answer.headers)
        if request.headers.get("Content-Encoding") != "aes128gcm":
            return self._reject(400, "Content-Encoding is not aes128gcm")
        try:
            plaintext = http_ece.decrypt(
                body, private_key=browser.private_key, auth_secret=browser.auth, version="aes128gcm"
            )
        except Exception as exc:
            return self._reject(400, f"could not decrypt: {type(exc).__name__}")
        browser.received.append(plaintext)
        browser.topics.append(topic)
        browser.urgencies.append(urgency)
        browser.ttls.append(int(ttl_text))
        return web.Response(status=201, headers={"Location": f"{self.base_url}/m/{secrets.token_hex(8)}"})


@dataclass
class Hook:
    name: str
    url: str
    secret: str
    received: list[bytes] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    # Repeats of a webhook-id already accepted: answered 2xx, not counted again.
    duplicate_ids: list[str] = field(default_factory=list)
    id_to_notification: dict[str, str] = field(default_factory=dict)


class FakeWebhookReceiver:
    """An HTTP endpoint that accepts only bodies whose Standard Webhooks signature verifies."""

    def __init__(self) -> None:
        self.hooks: dict[str, Hook] = {}
        self.scripts: dict[str, deque[Scripted]] = defaultdict(deque)
        self.attempts: Counter[str] = Counter()
        # When each request arrived (time.monotonic()), per hook name.
        self.arrivals: defaultdict[str, list[float]] = defaultdict(list)
        self.rejections: list[str] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/hook/{name}", self._receive)
        self.app = app

    async def start(self) -> FakeWebhookReceiver:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def new_hook(self, secret: str | None = None) -> Hook:
        """A receiving URL; the secret is set later when the service hands it out."""
        name = secrets.token_urlsafe(8)
        hook = Hook(name=name, url=f"{self.base_url}/hook/{name}", secret=secret or "")
        self.hooks[name] = hook
        return hook

    def script(self, hook: Hook, *answers: Scripted) -> None:
        self.scripts[hook.name].extend(answers)

    async def _receive(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.attempts[name] += 1
        self.arrivals[name].append(time.monotonic())
        hook = self.hooks.get(name)
        if hook is None:
            return web.Response(status=404)
        body = await request.read()
        try:
            webhooks.verify(hook.secret, request.headers, body)
        except (webhooks.WebhookVerificationError, ValueError) as exc:
            self.rejections.append(str(exc))
            return web.Response(status=401, text="bad signature")
        if self.scripts[name]:
            answer = self.scripts[name].popleft()
            return web.Response(status=answer.status, headers=answer.headers)
        msg_id = request.headers["webhook-id"]
        if msg_id in hook.id_to_notification:
            hook.duplicate_ids.append(msg_id)
            return web.Response(status=204)
        hook.received.append(body)
        hook.ids.append(msg_id)
        hook.id_to_notification[msg_id] = json.loads(body).get("data", {}).get("notification_id", "")
        return web.Response(status=204)
