"""`make token` / `python -m gateway.token`: a token the gateway it is minted for accepts.

Beside a compose stack that is the gateway configured from `.env` (compose passes it the file's
JWT_SECRET), not the development secret.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from pathlib import Path

import jwt
import pytest

from gateway.settings import GatewaySettings
from gateway.token import main as token_main
from shared import TokenVerifier
from testkit import ROOT

COMPOSE_SECRET = "compose-jwt-secret-from-dotenv-0123456789abcdef"
ENV_FILE = f"""# as deploy/init_env.py writes it
ENVIRONMENT=production
JWT_SECRET={COMPOSE_SECRET}
SECRET_KEY=compose-secret-key-from-dotenv-0123456789abcdef
JWT_ISSUER=https://issuer.example
"""


def mint(argv: list[str]) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert token_main(argv) == 0
    return out.getvalue().strip(), err.getvalue()


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No JWT settings in the environment (the test session sets some), cwd an empty dir."""
    for name in ("JWT_SECRET", "ENVIRONMENT", "SECRET_KEY", "JWT_ISSUER", "JWT_AUDIENCE", "JWT_ALGORITHM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_token_is_signed_with_the_jwt_secret_of_dotenv(bare_env: Path) -> None:
    (bare_env / ".env").write_text(ENV_FILE)
    token, note = mint(["--sub", "alice", "--scopes", "tasks cache"])
    # What the compose gateway runs with: the file's values, production.
    gateway = GatewaySettings(_env_file=bare_env / ".env")  # type: ignore[call-arg]
    assert (gateway.environment, gateway.jwt_secret) == ("production", COMPOSE_SECRET)
    principal = TokenVerifier(gateway).verify(token)
    assert (principal.sub, principal.scopes) == ("alice", {"tasks", "cache"})
    assert (
        jwt.decode(token, COMPOSE_SECRET, algorithms=["HS256"], issuer="https://issuer.example")["sub"]
        == "alice"
    )
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, GatewaySettings().jwt_secret, algorithms=["HS256"], options={"verify_iss": False})
    assert ".env" in note


def test_environment_jwt_secret_wins_over_dotenv(bare_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (bare_env / ".env").write_text(ENV_FILE)
    mine = "a-secret-from-the-environment-0123456789abcdefgh"
    monkeypatch.setenv("JWT_SECRET", mine)
    token, _ = mint(["--sub", "bob"])
    assert jwt.decode(token, mine, algorithms=["HS256"], options={"verify_iss": False})["sub"] == "bob"


def test_without_dotenv_the_development_secret_signs(bare_env: Path) -> None:
    token, note = mint(["--sub", "carol"])
    dev = GatewaySettings()
    assert dev.environment == "development"
    assert TokenVerifier(dev).verify(token).sub == "carol"
    assert note == ""
    # --no-env-file ignores a present .env.
    (bare_env / ".env").write_text(ENV_FILE)
    token, _ = mint(["--sub", "carol", "--no-env-file"])
    assert TokenVerifier(dev).verify(token).sub == "carol"


def test_dotenv_with_an_empty_jwt_secret_is_refused_with_its_name(bare_env: Path) -> None:
    (bare_env / ".env").write_text("ENVIRONMENT=production\nJWT_SECRET=\nSECRET_KEY=x" + "y" * 40 + "\n")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        token_main(["--sub", "alice"])
    assert exit_.value.code == 2
    assert "JWT_SECRET must be at least 32 bytes" in err.getvalue() and ".env" in err.getvalue()


def test_make_token_reads_the_env_file(bare_env: Path) -> None:
    """The README's command, through the Makefile."""
    env_file = bare_env / "compose.env"
    env_file.write_text(ENV_FILE)
    proc = subprocess.run(
        ["make", "-s", "token", "SUB=dave", "SCOPES=tasks scrape", f"ENV_FILE={env_file}"],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    gateway = GatewaySettings(_env_file=env_file)  # type: ignore[call-arg]
    principal = TokenVerifier(gateway).verify(proc.stdout.strip())
    assert (principal.sub, principal.scopes) == ("dave", {"tasks", "scrape"})
