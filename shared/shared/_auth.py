"""JWT bearer authentication with PyJWT; the algorithm comes from configuration only."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from starlette.concurrency import run_in_threadpool

from shared._errors import Forbidden, Unauthorized
from shared._settings import BaseServiceSettings

KNOWN_SCOPES = frozenset({"tasks", "scrape", "notify:send", "cache", "admin"})


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    scopes: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    def has(self, scope: str) -> bool:
        return scope in self.scopes or self.is_admin


class TokenVerifier:
    """Verifies bearer tokens against the configured key and algorithm."""

    def __init__(self, settings: BaseServiceSettings) -> None:
        self.settings = settings
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._jwks: jwt.PyJWKClient | None = None
        self._key: Any
        if settings.jwt_algorithm.startswith("HS"):
            self._key = settings.jwt_secret
        elif settings.jwt_public_key:
            self._key = settings.jwt_public_key.replace("\\n", "\n")
        else:
            assert settings.jwks_url is not None
            self._key = None
            self._jwks = jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=300, timeout=5)

    @property
    def needs_io(self) -> bool:
        return self._jwks is not None

    def verify(self, token: str) -> Principal:
        """The caller of a valid token; accepted tokens are remembered (successes only)."""
        hit = self._cache.get(token)
        if hit is not None:
            if time.time() < hit[1]:
                return hit[0]
            self._cache.pop(token, None)
        principal, exp = self._verify(token)
        cfg = self.settings
        if cfg.token_cache_size and cfg.token_cache_seconds:
            if len(self._cache) >= cfg.token_cache_size:
                self._cache.pop(next(iter(self._cache)), None)  # oldest first: dicts keep order
            self._cache[token] = (
                principal,
                min(time.time() + cfg.token_cache_seconds, exp + cfg.jwt_leeway_seconds),
            )
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        cfg = self.settings
        if not token or len(token) > cfg.jwt_max_length:
            raise Unauthorized("The bearer token is missing or too long.")
        key = self._key
        try:
            if self._jwks is not None:
                key = self._jwks.get_signing_key_from_jwt(token).key
            options: dict[str, Any] = {"require": ["exp", "sub"]}
            if cfg.jwt_issuer:
                options["require"].append("iss")
            if cfg.jwt_audience:
                options["require"].append("aud")
            claims = jwt.decode(
                token,
                key,
                algorithms=[cfg.jwt_algorithm],  # pinned: a token naming another algorithm fails
                issuer=cfg.jwt_issuer,
                audience=cfg.jwt_audience,
                leeway=cfg.jwt_leeway_seconds,
                options=options,  # type: ignore[arg-type]
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The bearer token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("The bearer token is not valid yet.") from None
        except (jwt.PyJWKClientError, jwt.InvalidTokenError):
            raise Unauthorized("The bearer token is invalid.") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 256:
            raise Unauthorized("The bearer token has no usable subject.")
        principal = Principal(sub=sub, scopes=parse_scopes(claims.get("scope", claims.get("scp"))))
        return principal, float(claims["exp"])

    async def verify_async(self, token: str) -> Principal:
        if self.needs_io and token not in self._cache:
            return await run_in_threadpool(self.verify, token)
        return self.verify(token)


def parse_scopes(raw: object) -> frozenset[str]:
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list):
        return frozenset(s for s in raw if isinstance(s, str))
    return frozenset()


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("A bearer token is required.")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
    return token.strip()


def mint_token(
    settings: BaseServiceSettings,
    sub: str,
    scopes: Iterable[str],
    ttl_seconds: int = 3600,
    *,
    private_key: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Mint a token for local use and tests (HS* with JWT_SECRET, or the given private key)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "scope": " ".join(scopes),
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    claims.update(extra or {})
    key = private_key if private_key is not None else settings.jwt_secret
    return jwt.encode(claims, key, algorithm=settings.jwt_algorithm)


async def current_user(request: Request) -> Principal:
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    verifier: TokenVerifier = request.app.state.verifier
    principal = await verifier.verify_async(bearer_token(request.headers.get("authorization")))
    request.state.principal = principal
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]


# Each require_scope dependency and the scope it checks, for scopes_required.
_SCOPE_OF: dict[Callable[..., Any], str] = {}


def require_scope(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """Dependency factory: the caller must hold `scope` (or `admin`)."""

    # It takes the request, not CurrentUser: one dependency level fewer for FastAPI to solve on
    # every request (each level is a full solve_dependencies pass).
    async def dependency(request: Request) -> Principal:
        user = await current_user(request)
        if not user.has(scope):
            raise Forbidden(f"This needs the '{scope}' scope.")
        return user

    _SCOPE_OF[dependency] = scope
    return dependency


def scopes_required(dependant: Dependant) -> set[str]:
    """The scopes a route's dependencies (at any depth) demand through `require_scope`."""
    found = {_SCOPE_OF[dependant.call]} if dependant.call in _SCOPE_OF else set()
    for sub in dependant.dependencies:
        found |= scopes_required(sub)
    return found


# The caller each scope of KNOWN_SCOPES admits, declared once for every service's routes
# (two routers of one service, or two services, asking for "tasks" ask the same way).
TasksUser = Annotated[Principal, Depends(require_scope("tasks"))]
ScrapeUser = Annotated[Principal, Depends(require_scope("scrape"))]
SendUser = Annotated[Principal, Depends(require_scope("notify:send"))]
CacheUser = Annotated[Principal, Depends(require_scope("cache"))]


# Service-to-service calls (task-service's scheduler -> a target service's internal endpoints).
# The credential is a 60 s HS256 token signed with a key derived from SECRET_KEY, which every
# service already shares and which production refuses at its default. It is not a user token:
# its own key (so a user token, whatever JWT_ALGORITHM is, never verifies here, and this one
# never verifies at the public endpoints) and its own audience and `svc` claim. It carries the
# owner as `sub` and only the scopes the target needs.
SERVICE_AUDIENCE = "smartapp-internal"
SERVICE_TOKEN_SECONDS = 60
SERVICE_TOKEN_HEADER = "x-service-token"  # noqa: S105 - a header name, not a secret


def _service_key(settings: BaseServiceSettings) -> bytes:
    import hashlib
    import hmac

    return hmac.new(settings.secret_key.encode(), b"smartapp service token v1", hashlib.sha256).digest()


def mint_service_token(settings: BaseServiceSettings, sub: str, scopes: Iterable[str], svc: str) -> str:
    now = int(time.time())
    claims = {
        "sub": sub,
        "scope": " ".join(sorted(scopes)),
        "svc": svc,
        "aud": SERVICE_AUDIENCE,
        "iat": now,
        "exp": now + SERVICE_TOKEN_SECONDS,
    }
    return jwt.encode(claims, _service_key(settings), algorithm="HS256")


def verify_service_token(settings: BaseServiceSettings, token: str | None, svc: str) -> Principal:
    """The principal a service acts for; 401 without a valid credential of service `svc`."""
    if not token or len(token) > 4096:
        raise Unauthorized("This internal endpoint needs a service credential.")
    try:
        claims = jwt.decode(
            token,
            _service_key(settings),
            algorithms=["HS256"],
            audience=SERVICE_AUDIENCE,
            options={"require": ["exp", "sub", "aud", "svc"]},
        )
    except jwt.InvalidTokenError:
        raise Unauthorized("The service credential is invalid or expired.") from None
    sub = claims.get("sub")
    if claims.get("svc") != svc or not isinstance(sub, str) or not sub or len(sub) > 256:
        raise Unauthorized("The service credential is not for this endpoint.")
    return Principal(sub=sub, scopes=parse_scopes(claims.get("scope")))


def service_caller(svc: str) -> Callable[[Request], Awaitable[Principal]]:
    """Dependency factory: the owner a service credential of `svc` acts for (X-Service-Token)."""

    async def dependency(request: Request) -> Principal:
        return verify_service_token(
            request.app.state.settings, request.headers.get(SERVICE_TOKEN_HEADER), svc
        )

    return dependency
