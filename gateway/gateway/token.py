"""Mint a token for local use: `python -m gateway.token --sub alice --scopes "tasks scrape cache"`.

Signs with the configured key (JWT_SECRET for HS*, or --private-key for RS256/ES256) and prints
only the token, so `TOKEN=$(python -m gateway.token ...)` works.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.settings import GatewaySettings
from shared import KNOWN_SCOPES, mint_token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.token", description=__doc__)
    parser.add_argument("--sub", required=True, help="the user id (the token's subject)")
    parser.add_argument(
        "--scopes",
        default="tasks",
        help=f"space-separated scopes; known: {' '.join(sorted(KNOWN_SCOPES))}",
    )
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    parser.add_argument("--private-key", type=Path, help="PEM private key for RS256/ES256")
    args = parser.parse_args(argv)

    scopes = args.scopes.split()
    unknown = sorted(set(scopes) - KNOWN_SCOPES)
    if unknown:
        parser.error(f"unknown scopes: {' '.join(unknown)} (known: {' '.join(sorted(KNOWN_SCOPES))})")
    if not args.sub.strip() or len(args.sub) > 256:
        parser.error("--sub must be 1-256 characters")
    if not 1 <= args.ttl <= 30 * 24 * 3600:
        parser.error("--ttl must be between 1 second and 30 days")
    settings = GatewaySettings()
    private_key = None
    if not settings.jwt_algorithm.startswith("HS"):
        if args.private_key is None:
            parser.error(f"JWT_ALGORITHM={settings.jwt_algorithm} needs --private-key")
        private_key = args.private_key.read_text()
    print(mint_token(settings, args.sub, scopes, args.ttl, private_key=private_key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
