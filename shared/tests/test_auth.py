"""JWT verification: the algorithm is pinned, exp and sub required, iss/aud checked when set."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared import BaseServiceSettings, TokenVerifier, Unauthorized, mint_token
from shared._auth import parse_scopes

SECRET = "unit-test-secret-" + "0123456789abcdef" * 4


def hs_settings(**kw) -> BaseServiceSettings:
    return BaseServiceSettings(jwt_secret=SECRET, environment="test", **kw)


def claims(**kw) -> dict:
    return {"sub": "alice", "scope": "tasks cache", "exp": int(time.time()) + 60, **kw}


def test_valid_hs256() -> None:
    p = TokenVerifier(hs_settings()).verify(jwt.encode(claims(), SECRET, algorithm="HS256"))
    assert p.sub == "alice" and p.scopes == {"tasks", "cache"} and not p.is_admin


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode(claims(exp=int(time.time()) - 5), SECRET, algorithm="HS256"),
        jwt.encode(claims(nbf=int(time.time()) + 300), SECRET, algorithm="HS256"),
        jwt.encode({"scope": "tasks", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"),
        jwt.encode(claims(sub=""), SECRET, algorithm="HS256"),
        jwt.encode(claims(), SECRET, algorithm="HS512"),  # not the pinned algorithm
        jwt.encode(claims(), "another-secret-that-is-long-enough-0123456789", algorithm="HS256"),
        "not.a.token",
        "",
        "x" * 9000,
    ],
)
def test_rejected_tokens(token: str) -> None:
    with pytest.raises(Unauthorized):
        TokenVerifier(hs_settings()).verify(token)


def test_alg_none_rejected() -> None:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    with pytest.raises(Unauthorized):
        TokenVerifier(hs_settings()).verify(f"{header.decode()}.{body.decode()}.")


def test_issuer_and_audience_checked_when_configured() -> None:
    settings = hs_settings(jwt_issuer="https://idp", jwt_audience="smartapp")
    v = TokenVerifier(settings)
    assert v.verify(mint_token(settings, "alice", ["tasks"])).sub == "alice"
    for extra in ({"iss": "https://evil", "aud": "smartapp"}, {"iss": "https://idp", "aud": "other"}, {}):
        with pytest.raises(Unauthorized):
            v.verify(jwt.encode(claims(**extra), SECRET, algorithm="HS256"))


def test_rs256_and_algorithm_confusion() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem_pub = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = BaseServiceSettings(jwt_algorithm="RS256", jwt_public_key=pem_pub, environment="test")
    v = TokenVerifier(settings)
    assert v.verify(jwt.encode(claims(), key, algorithm="RS256")).sub == "alice"
    # the classic confusion: HS256 signed with the public key as the secret
    hs_header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    hs_body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    sig = base64.urlsafe_b64encode(
        hmac.new(pem_pub.encode(), hs_header + b"." + hs_body, hashlib.sha256).digest()
    ).rstrip(b"=")
    forged = b".".join([hs_header, hs_body, sig]).decode()
    with pytest.raises(Unauthorized):
        v.verify(forged)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(Unauthorized):
        v.verify(jwt.encode(claims(), ec_key, algorithm="ES256"))


def test_settings_refuse_default_secret_in_production(monkeypatch) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ValueError, match="JWT_SECRET"):
        BaseServiceSettings(environment="production", secret_key="s" * 40)
    with pytest.raises(ValueError, match="SECRET_KEY"):
        BaseServiceSettings(environment="production", jwt_secret="j" * 40)
    with pytest.raises(ValueError, match="JWT_PUBLIC_KEY"):
        BaseServiceSettings(jwt_algorithm="RS256")
    with pytest.raises(ValueError, match="32 bytes"):
        BaseServiceSettings(environment="production", jwt_secret="short", secret_key="s" * 40)
    ok = BaseServiceSettings(environment="production", jwt_secret="j" * 40, secret_key="s" * 40)
    assert ok.environment == "production"


def test_seed_env_names_build_urls(monkeypatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("BROKER_URL", raising=False)
    monkeypatch.setenv("REDIS_HOST", "cache.internal")
    monkeypatch.setenv("REDIS_PORT", "6380")
    monkeypatch.setenv("RABBITMQ_HOST", "mq.internal")
    monkeypatch.setenv("RABBITMQ_PORT", "5673")
    s = BaseServiceSettings()
    assert s.redis_url == "redis://cache.internal:6380/0"
    assert s.broker_url == "amqp://guest:guest@mq.internal:5673/%2F"
    monkeypatch.setenv("REDIS_URL", "redis://r:1/2")
    assert BaseServiceSettings().redis_url == "redis://r:1/2"


def test_parse_scopes() -> None:
    assert parse_scopes("a  b") == {"a", "b"}
    assert parse_scopes(["a", 1]) == {"a"}
    assert parse_scopes(None) == frozenset()


def test_remembered_token_still_expires() -> None:
    v = TokenVerifier(hs_settings())
    token = jwt.encode(claims(exp=int(time.time()) + 1), SECRET, algorithm="HS256")
    assert v.verify(token).sub == "alice"
    assert v.verify(token).sub == "alice"  # a hit
    time.sleep(1.2)
    with pytest.raises(Unauthorized):
        v.verify(token)
    bad = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(Unauthorized):
        v.verify(bad)
