"""Mint a token for local use: `python -m gateway.token --sub alice --scopes "tasks scrape cache"`.

Signs with the configured key (JWT_SECRET for HS*, or --private-key for RS256/ES256) and prints
only the token, so `TOKEN=$(python -m gateway.token ...)` works.

The settings come from the environment and then from `.env` in the current directory when it
exists (or --env-file): the file docker compose hands the gateway, so a token minted beside a
compose stack is signed with that stack's JWT_SECRET (and carries its JWT_ISSUER/JWT_AUDIENCE).
A variable set in the environment wins over the file, as in compose.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

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
    parser.add_argument(
        "--env-file",
        type=Path,
        default=Path(".env"),
        help="dotenv file read after the environment, when it exists (default: .env)",
    )
    parser.add_argument("--no-env-file", action="store_true", help="read the environment only")
    args = parser.parse_args(argv)

    scopes = args.scopes.split()
    unknown = sorted(set(scopes) - KNOWN_SCOPES)
    if unknown:
        parser.error(f"unknown scopes: {' '.join(unknown)} (known: {' '.join(sorted(KNOWN_SCOPES))})")
    if not args.sub.strip() or len(args.sub) > 256:
        parser.error("--sub must be 1-256 characters")
    if not 1 <= args.ttl <= 30 * 24 * 3600:
        parser.error("--ttl must be between 1 second and 30 days")
    env_file: Path | None = None if args.no_env_file or not args.env_file.is_file() else args.env_file
    try:
        settings = GatewaySettings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        where = f"the environment and {env_file}" if env_file else "the environment"
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        parser.error(f"settings from {where}: {problems}")
    if env_file is not None:
        print(f"signing with the settings of {env_file} (the environment wins)", file=sys.stderr)
    private_key = None
    if not settings.jwt_algorithm.startswith("HS"):
        if args.private_key is None:
            parser.error(f"JWT_ALGORITHM={settings.jwt_algorithm} needs --private-key")
        private_key = args.private_key.read_text()
    print(mint_token(settings, args.sub, scopes, args.ttl, private_key=private_key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
