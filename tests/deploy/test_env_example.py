"""Every environment variable the code reads is documented in .env.example, set where it must
be, and the settings load in the environments compose and Kubernetes give the processes."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = REPO / ".env.example"
COMPOSE_FILE = REPO / "docker-compose.yml"
K8S_BASE = REPO / "deploy" / "k8s" / "base"
PACKAGES = {
    "shared": REPO / "shared" / "shared",
    "gateway": REPO / "gateway" / "gateway",
    "task_service": REPO / "task-service" / "task_service",
    "scraping_service": REPO / "scraping-service" / "scraping_service",
    "notification_service": REPO / "notification-service" / "notification_service",
}
REQUIRED_SECRETS = {
    "JWT_SECRET": "test-jwt-secret-0123456789abcdef0123456789abcdef",
    "SECRET_KEY": "test-secret-key-0123456789abcdef0123456789abcdef",
    "RABBITMQ_PASSWORD": "test-rabbitmq-password",
    "FLOWER_BASIC_AUTH": "admin:test-flower-password",
    "GRAFANA_ADMIN_PASSWORD": "test-grafana-password",
}
# Read by third-party programs we configure, not by our code.
THIRD_PARTY = {"FLOWER_BASIC_AUTH"}

_NAME_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")

# Imports every module of the packages in a fresh interpreter and describes each pydantic
# settings class: which environment names fill each field and whether it has a default.
_DESCRIBE = r"""
import importlib, json, pkgutil, sys
from pydantic import AliasChoices
from pydantic_settings import BaseSettings
pkgs = sys.argv[1:]
errors = []
for p in pkgs:
    mod = importlib.import_module(p)
    for info in pkgutil.walk_packages(mod.__path__, p + "."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            importlib.import_module(info.name)
        except Exception as e:
            errors.append(f"{info.name}: {type(e).__name__}: {e}")
def subclasses(c):
    for s in c.__subclasses__():
        yield s
        yield from subclasses(s)
out = {}
for cls in set(subclasses(BaseSettings)):
    if cls.__module__.split(".")[0] not in pkgs:
        continue
    prefix = cls.model_config.get("env_prefix", "") or ""
    fields = []
    for name, f in cls.model_fields.items():
        va = f.validation_alias
        if isinstance(va, str):
            names = [va]
        elif isinstance(va, AliasChoices):
            names = [c for c in va.choices if isinstance(c, str)]
        elif f.alias:
            names = [f.alias]
        else:
            names = [prefix + name]
        default = None if f.is_required() else f.get_default(call_default_factory=True)
        fields.append({"field": name, "env": [n.upper() for n in names], "required": f.is_required(),
                       "default": default if isinstance(default, (str, int, float, bool, type(None))) else repr(default)})
    out[f"{cls.__module__}.{cls.__qualname__}"] = fields
print(json.dumps({"classes": out, "errors": errors}))
"""

# Instantiates every settings class of each case's packages with exactly that case's
# environment (plus PATH), as the container would start. Cases come as JSON on stdin; one
# interpreter serves them all, since pydantic-settings reads os.environ at instantiation.
_LOAD = r"""
import importlib, json, os, pkgutil, sys
from pydantic_settings import BaseSettings
cases = json.load(sys.stdin)
for p in sorted({p for case in cases for p in case["packages"]}):
    mod = importlib.import_module(p)
    for info in pkgutil.walk_packages(mod.__path__, p + "."):
        if info.name.rsplit(".", 1)[-1] != "__main__":
            importlib.import_module(info.name)
def subclasses(c):
    for s in c.__subclasses__():
        yield s
        yield from subclasses(s)
classes = set(subclasses(BaseSettings))
path = os.environ.get("PATH", "")
out = []
for case in cases:
    os.environ.clear()
    os.environ.update(case["env"])
    os.environ["PATH"] = path
    failures, loaded = [], []
    for cls in classes:
        if cls.__module__.split(".")[0] not in case["packages"]:
            continue
        try:
            cls()
            loaded.append(cls.__qualname__)
        except Exception as e:
            failures.append(f"{cls.__module__}.{cls.__qualname__}: {e}")
    out.append({"label": case["label"], "loaded": sorted(loaded), "failures": failures})
print(json.dumps(out))
"""


def load_settings(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=clean_env({}),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: list[dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """Only what a container would have: PATH and the given variables."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env.update(extra)
    return env


def run_json(script: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def importable_packages() -> list[str]:
    return [name for name, path in PACKAGES.items() if (path / "__init__.py").is_file()]


@pytest.fixture(scope="module")
def settings_classes() -> dict[str, list[dict[str, Any]]]:
    described = run_json(_DESCRIBE, importable_packages(), clean_env({}))
    assert not described["errors"], "modules that do not import:\n" + "\n".join(described["errors"])
    classes: dict[str, list[dict[str, Any]]] = described["classes"]
    assert any(name.endswith("BaseServiceSettings") for name in classes)
    return classes


def environ_reads() -> dict[str, str]:
    """Names read through os.environ / os.getenv anywhere in the packages, with where."""
    found: dict[str, str] = {}
    for _package, path in PACKAGES.items():
        for file in path.rglob("*.py"):
            tree = ast.parse(file.read_text(), filename=str(file))
            for node in ast.walk(tree):
                name = _environ_read(node)
                if name:
                    found.setdefault(name, f"{file.relative_to(REPO)}:{node.lineno}")  # type: ignore[attr-defined]
    return found


def _is_environ(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _environ_read(node: ast.AST) -> str | None:
    def const(n: ast.AST | None) -> str | None:
        return n.value if isinstance(n, ast.Constant) and isinstance(n.value, str) else None

    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
        func = node.func
        if func.attr in ("get", "setdefault", "pop") and _is_environ(func.value):
            return const(node.args[0])
        if func.attr == "getenv" and isinstance(func.value, ast.Name) and func.value.id == "os":
            return const(node.args[0])
    if isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
        return const(node.slice)
    if (
        isinstance(node, ast.Compare)
        and len(node.comparators) == 1
        and _is_environ(node.comparators[0])
        and isinstance(node.ops[0], (ast.In, ast.NotIn))
    ):
        return const(node.left)
    return None


def env_example_names() -> tuple[dict[str, str], dict[str, str]]:
    """(set, documented-but-commented) names of .env.example with their values."""
    active: dict[str, str] = {}
    commented: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = _NAME_LINE.match(line.strip())
        if m:
            (commented if m.group(1) else active)[m.group(2)] = m.group(3)
    return active, commented


def compose_data() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        current = env.get(name)
        if op in (":-", "-"):
            return current if current else arg
        if op in (":?", "?"):
            assert current, f"{name} must be set"
            return current
        return current or ""

    return _VAR.sub(sub, value)


def code_env_names(classes: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Every environment name the code reads -> where (class.field or file:line)."""
    names: dict[str, str] = {}
    for cls, fields in classes.items():
        for f in fields:
            for env in f["env"]:
                names.setdefault(env, f"{cls}.{f['field']} (default {f['default']!r})")
    for env, where in environ_reads().items():
        names.setdefault(env, where)
    return names


def test_every_env_var_the_code_reads_is_documented(
    settings_classes: dict[str, list[dict[str, Any]]],
) -> None:
    active, commented = env_example_names()
    documented = set(active) | set(commented)
    missing = {n: w for n, w in code_env_names(settings_classes).items() if n not in documented}
    assert not missing, "add to .env.example (commented, with the default):\n" + "\n".join(
        f"  {n}  <- {w}" for n, w in sorted(missing.items())
    )


def test_contract_env_vars_are_documented() -> None:
    active, commented = env_example_names()
    contract = {
        "JWT_SECRET",
        "JWT_ALGORITHM",
        "JWT_PUBLIC_KEY",
        "JWKS_URL",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "ENVIRONMENT",
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_URL",
        "RABBITMQ_HOST",
        "RABBITMQ_PORT",
        "RABBITMQ_USER",
        "RABBITMQ_PASSWORD",
        "RABBITMQ_VHOST",
        "BROKER_URL",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "VAPID_PRIVATE_KEY",
        "VAPID_SUBJECT",
        "OUTBOUND_ALLOWLIST",
        "SCRAPE_ALLOW_PRIVATE",
        "TASK_SERVICE_URL",
        "SCRAPING_SERVICE_URL",
        "NOTIFICATION_SERVICE_URL",
        "SECRET_KEY",
        "LOG_LEVEL",
        "RATE_LIMIT_PER_MINUTE",
    }
    assert contract <= set(active) | set(commented), contract - set(active) - set(commented)


def test_required_settings_are_set(settings_classes: dict[str, list[dict[str, Any]]]) -> None:
    active, _ = env_example_names()
    compose_env: set[str] = set()
    for svc in compose_data()["services"].values():
        env = svc.get("environment") or {}
        compose_env |= set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}
    for cls, fields in settings_classes.items():
        for f in fields:
            if f["required"]:
                assert set(f["env"]) & (set(active) | compose_env), (
                    f"{cls}.{f['field']} has no default and is not set"
                )


def test_env_example_names_only_what_is_read(settings_classes: dict[str, list[dict[str, Any]]]) -> None:
    active, commented = env_example_names()
    read = set(code_env_names(settings_classes)) | THIRD_PARTY
    used_by_compose = {m[0] for m in _VAR.findall(COMPOSE_FILE.read_text())}
    stale = (set(active) | set(commented)) - read - used_by_compose
    assert not stale, f".env.example names variables nothing reads: {sorted(stale)}"


def test_env_example_secrets_are_empty() -> None:
    active, _ = env_example_names()
    for name in REQUIRED_SECRETS:
        assert active.get(name) == "", f"{name} must ship empty in .env.example (compose refuses it empty)"


def test_no_empty_optional_values() -> None:
    # An empty value is a value: `OPENAI_API_KEY=` would set the key to "" instead of leaving it unset.
    active, _ = env_example_names()
    empty = {n for n, v in active.items() if v == "" and n not in REQUIRED_SECRETS}
    assert not empty, f"comment these out instead of leaving them empty: {sorted(empty)}"


def _service_env(svc: dict[str, Any], dotenv: dict[str, str]) -> dict[str, str]:
    """What a compose container gets: env_file (.env) overridden by `environment`."""
    env = dict(dotenv)
    env.update({k: str(v) for k, v in (svc.get("environment") or {}).items()})
    return env


def _package_of(svc: dict[str, Any]) -> str | None:
    cmd = svc.get("command") or []
    if cmd[:2] == ["python", "-m"] or cmd[:2] == ["celery", "-A"]:
        return str(cmd[2]).split(".")[0]
    return None


def compose_cases(uncomment_examples: bool) -> list[dict[str, Any]]:
    active, commented = env_example_names()
    dotenv = {**active, **REQUIRED_SECRETS}
    if uncomment_examples:
        # The documented examples must be valid values too.
        dotenv = {**{n: v for n, v in commented.items() if v and "..." not in v}, **dotenv}
    data = interpolate(compose_data(), dotenv)
    cases = []
    for name, svc in data["services"].items():
        package = _package_of(svc)
        if package is None:
            continue
        assert (PACKAGES[package] / "__init__.py").is_file(), f"{name}: no package {package}"
        label = f"compose {name}{' (examples uncommented)' if uncomment_examples else ''}"
        cases.append(
            {"label": label, "packages": sorted({"shared", package}), "env": _service_env(svc, dotenv)}
        )
    assert len(cases) == 10  # 4 APIs, 3 workers, beat, the scheduler, flower
    return cases


def k8s_cases() -> list[dict[str, Any]]:
    configmap = yaml.safe_load((K8S_BASE / "configmap.yaml").read_text())
    templates = [d for d in yaml.safe_load_all((K8S_BASE / "secret.template.yaml").read_text()) if d]
    app_secret = next(d for d in templates if d["metadata"]["name"] == "smartapp-secrets")
    # The template's placeholders stand for real values of the same names.
    secrets = {k: REQUIRED_SECRETS.get(k, f"{k.lower()}-value") for k in app_secret["stringData"]}
    base_env = {**configmap["data"], **secrets}
    cases = []
    for file in sorted(K8S_BASE.glob("*.yaml")):
        for doc in yaml.safe_load_all(file.read_text()):
            if not doc or doc.get("kind") != "Deployment":
                continue
            for ctr in doc["spec"]["template"]["spec"]["containers"]:
                env = dict(base_env)
                env.update({e["name"]: e["value"] for e in ctr.get("env", []) if "value" in e})
                package = str(ctr["command"][2]).split(".")[0]
                cases.append(
                    {
                        "label": f"k8s {doc['metadata']['name']}",
                        "packages": sorted({"shared", package}),
                        "env": env,
                    }
                )
    assert len(cases) == 9  # 4 APIs, 3 workers, beat, the scheduler
    return cases


def test_settings_load_where_deployed() -> None:
    """Every settings class loads in every compose container and Kubernetes pod environment."""
    results = load_settings(compose_cases(False) + compose_cases(True) + k8s_cases())
    failures = [f"{r['label']}: {f}" for r in results for f in r["failures"]]
    assert not failures, "\n".join(failures)
    assert all(r["loaded"] for r in results), [r["label"] for r in results if not r["loaded"]]


def test_init_env_writes_a_private_env_with_every_secret(tmp_path: Path) -> None:
    out = tmp_path / ".env"
    run = [sys.executable, str(REPO / "deploy" / "init_env.py"), "--output", str(out)]
    subprocess.run(run, check=True, capture_output=True, timeout=60)
    assert out.stat().st_mode & 0o777 == 0o600
    written = {
        m.group(2): m.group(3)
        for line in out.read_text().splitlines()
        if (m := _NAME_LINE.match(line)) and not m.group(1)
    }
    for name in REQUIRED_SECRETS:
        assert len(written[name]) >= 16, name
    assert written["FLOWER_BASIC_AUTH"].startswith("admin:")
    assert "VAPID_PRIVATE_KEY" in written
    # Compose starts with it, and every process's settings load from it.
    data = interpolate(compose_data(), written)
    cases = []
    for name, svc in data["services"].items():
        package = _package_of(svc)
        if package:
            cases.append(
                {"label": name, "packages": sorted({"shared", package}), "env": _service_env(svc, written)}
            )
    results = load_settings(cases)
    assert not [f for r in results for f in r["failures"]], results
    # A second run keeps the existing file.
    again = subprocess.run(run, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 1 and "exists" in again.stderr


def test_every_setting_is_used_by_the_code(settings_classes: dict[str, list[dict[str, Any]]]) -> None:
    """A documented setting that nothing reads misleads operators (NOTIFY_PUMP_INTERVAL did)."""
    sources = "\n".join(path.read_text() for package in PACKAGES.values() for path in package.rglob("*.py"))
    used = set(re.findall(r"\.([a-z_][a-z0-9_]*)\b", sources)) | set(
        re.findall(r"[\"']([a-z_][a-z0-9_]*)[\"']", sources)
    )
    unused = {
        f"{cls}.{f['field']}"
        for cls, fields in settings_classes.items()
        for f in fields
        if f["field"] not in used
    }
    assert not unused, f"settings nothing reads: {sorted(unused)}"
