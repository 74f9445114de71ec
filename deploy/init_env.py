"""Write .env for docker compose from .env.example, with fresh random secrets.

    python deploy/init_env.py            # refuses to replace an existing .env
    python deploy/init_env.py --force

Fills the REQUIRED secrets that .env.example ships empty, and a VAPID key so Web Push
subscriptions survive a Redis wipe. Everything else is copied as documented. The file is
created readable by its owner only.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def vapid_private_key() -> str | None:
    """A P-256 private key as base64url of its raw 32 bytes (the form VAPID_PRIVATE_KEY takes)."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError:
        return None
    number = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value
    return base64.urlsafe_b64encode(number.to_bytes(32, "big")).rstrip(b"=").decode()


def generated_values() -> dict[str, str]:
    values = {
        "JWT_SECRET": secrets.token_urlsafe(48),
        "SECRET_KEY": secrets.token_urlsafe(48),
        # URL-safe alphabet: the password also goes into AMQP and management URLs.
        "RABBITMQ_PASSWORD": secrets.token_urlsafe(24),
        "FLOWER_BASIC_AUTH": f"admin:{secrets.token_urlsafe(18)}",
        "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(18),
    }
    vapid = vapid_private_key()
    if vapid:
        values["VAPID_PRIVATE_KEY"] = vapid
    return values


def render(example: str, values: dict[str, str]) -> str:
    out = []
    for line in example.splitlines():
        m = _LINE.match(line)
        if m and m.group(2) in values and (m.group(1) is None or m.group(3) == ""):
            # An empty REQUIRED value, or a commented example with no value: fill it in.
            line = f"{m.group(2)}={values[m.group(2)]}"
        out.append(line)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="replace an existing .env")
    parser.add_argument("--example", type=Path, default=ROOT / ".env.example")
    parser.add_argument("--output", type=Path, default=ROOT / ".env")
    args = parser.parse_args(argv)
    if args.output.exists() and not args.force:
        print(f"{args.output} exists; use --force to replace it", file=sys.stderr)
        return 1
    text = render(args.example.read_text(), generated_values())
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(args.output, 0o600)  # noqa: PTH101 - O_CREAT's mode does not apply to an existing file
    print(f"wrote {args.output} (secrets generated; keep it out of version control)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
