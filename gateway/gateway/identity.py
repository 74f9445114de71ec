"""Who is calling: the shared TokenVerifier, with a short memory of tokens it already accepted."""

from __future__ import annotations

from gateway.settings import GatewaySettings
from shared import Forbidden, Principal, TokenVerifier, Unauthorized, bearer_token


class Identity:
    """Verifies bearer tokens with the shared TokenVerifier (which remembers accepted ones)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.verifier = TokenVerifier(settings)

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("A bearer token is required.", headers={"WWW-Authenticate": "Bearer"})
        return await self.verifier.verify_async(bearer_token(authorization))

    @staticmethod
    def authorize(principal: Principal, scope: str | None) -> None:
        if scope is not None and not principal.has(scope):
            raise Forbidden(f"This needs the '{scope}' scope.")
