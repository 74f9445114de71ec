"""Who is calling: the shared TokenVerifier, with a short memory of tokens it already accepted."""

from __future__ import annotations

import time

import jwt

from gateway.settings import GatewaySettings
from shared import Forbidden, Principal, TokenVerifier, Unauthorized, bearer_token


class Identity:
    """Verifies bearer tokens; remembers accepted ones until min(exp, now + cache TTL).

    The memory is keyed by the token's exact text, so a tampered or re-signed token is a miss
    and goes through full verification. Only successes are remembered; the expiry of a
    remembered token is still enforced on every hit. Checking the HMAC (or RSA signature) of a
    client's token on each of its requests is most of the gateway's auth cost.
    """

    def __init__(self, settings: GatewaySettings) -> None:
        self.verifier = TokenVerifier(settings)
        self.cache_seconds = settings.token_cache_seconds
        self.cache_size = settings.token_cache_size
        self.leeway = settings.jwt_leeway_seconds
        self._cache: dict[str, tuple[Principal, float]] = {}

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("A bearer token is required.", headers={"WWW-Authenticate": "Bearer"})
        token = bearer_token(authorization)
        now = time.time()
        hit = self._cache.get(token)
        if hit is not None:
            if now < hit[1]:
                return hit[0]
            self._cache.pop(token, None)
        principal = await self.verifier.verify_async(token)
        if self.cache_size and self.cache_seconds:
            self._remember(token, principal, now)
        return principal

    def _remember(self, token: str, principal: Principal, now: float) -> None:
        # The signature was verified just above, so reading exp without verifying again is safe.
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
        if not isinstance(exp, int | float):
            return
        until = min(now + self.cache_seconds, float(exp) + self.leeway)
        if len(self._cache) >= self.cache_size:
            # Evict the oldest entry (dicts keep insertion order); cheap and good enough here.
            self._cache.pop(next(iter(self._cache)), None)
        self._cache[token] = (principal, until)

    @staticmethod
    def authorize(principal: Principal, scope: str | None) -> None:
        if scope is not None and not principal.has(scope):
            raise Forbidden(f"This needs the '{scope}' scope.")
