"""docker-compose.yml: it parses, it is valid Compose, and its structure keeps the promises.

Docker cannot run here, so the file is checked as data: the Compose specification (through the
compose-spec parser, which rejects unknown keys and bad values), healthchecks and start order,
published ports, ports that agree with docs/api.md, and commands that name importable modules.
"""

from __future__ import annotations

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
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"

# The contract (docs/api.md "Ports", the issue): API ports, worker metrics ports, queues.
API_PORTS = {
    "gateway": 8000,
    "task-service": 8001,
    "scraping-service": 8002,
    "notification-service": 8003,
}
API_MODULES = {
    "gateway": "gateway",
    "task-service": "task_service",
    "scraping-service": "scraping_service",
    "notification-service": "notification_service",
}
WORKERS = {
    # compose service: (celery app module, queue, node name prefix, metrics port)
    "task-worker": ("task_service.worker", "default", "task", 9101),
    "scraping-worker": ("scraping_service.worker", "scraping", "scraping", 9102),
    "notification-worker": ("notification_service.worker", "notifications", "notifications", 9103),
}
GATEWAY_METRICS_PORT = 9100
INFRA = {"redis", "redis-cache", "rabbitmq", "prometheus", "grafana"}
ALL_SERVICES = set(API_PORTS) | set(WORKERS) | {"beat", "scheduler", "flower"} | INFRA
# Who may publish a port on the host, and which container port.
PUBLISHED = {
    "gateway": {8000},
    "rabbitmq": {15672},
    "flower": {5555},
    "prometheus": {9090},
    "grafana": {3000},
}
# Values for the variables .env must provide (compose refuses to start without them).
REQUIRED_SECRETS = {
    "JWT_SECRET": "test-jwt-secret-0123456789abcdef0123456789abcdef",
    "SECRET_KEY": "test-secret-key-0123456789abcdef0123456789abcdef",
    "RABBITMQ_PASSWORD": "test-rabbitmq-password",
    "FLOWER_BASIC_AUTH": "admin:test-flower-password",
    "GRAFANA_ADMIN_PASSWORD": "test-grafana-password",
}

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class MissingVariable(Exception):
    pass


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a dotenv file (comments and blanks skipped), as Compose reads them."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        out[key.strip()] = value.strip()
    return out


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose variable interpolation: ${V}, ${V:-default}, ${V-default}, ${V:?err}, $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3)
        current = env.get(name)
        if op == ":-":
            return current if current else arg
        if op == "-":
            return current if current is not None else arg
        if op in (":?", "?"):
            if (op == ":?" and not current) or current is None:
                raise MissingVariable(f"{name}: {arg}")
            return current
        return current or ""

    parts = value.split("$$")
    return "$".join(_VAR.sub(sub, part) for part in parts)


def raw_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def compose_env() -> dict[str, str]:
    """The environment `docker compose` interpolates with: .env (from .env.example) + secrets."""
    env = read_env_file(ENV_EXAMPLE)
    env.update(REQUIRED_SECRETS)
    return env


def resolved_compose() -> dict[str, Any]:
    data = interpolate(raw_compose(), compose_env())
    return {k: v for k, v in data.items() if not k.startswith("x-")}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return resolved_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    svcs = compose["services"]
    assert isinstance(svcs, dict)
    return svcs


def command_of(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    assert isinstance(cmd, list), "commands are exec-form lists (no shell, signals reach the process)"
    return [str(c) for c in cmd]


def published_ports(service: dict[str, Any]) -> list[tuple[str | None, int, int]]:
    """(host ip, host port, container port) for each `ports` entry in short syntax."""
    out: list[tuple[str | None, int, int]] = []
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        if len(parts) == 3:
            out.append((parts[0], int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            out.append((None, int(parts[0]), int(parts[1])))
        else:
            raise AssertionError(f"publish the host port explicitly: {entry!r}")
    return out


# --- the file and the specification -----------------------------------------------------------


def test_compose_parses_and_names_every_service(services: dict[str, Any]) -> None:
    assert set(services) == ALL_SERVICES


def test_compose_is_valid_compose_specification(compose: dict[str, Any]) -> None:
    try:
        from compose_spec import PyCompose
    except ImportError:
        pytest.fail("the compose-spec package is needed (dev dependency): uv add --dev compose-spec")
    # Raises ValueError naming the first unknown key, bad duration, bad restart policy, ...
    parsed = PyCompose.from_json(json.dumps(compose))
    assert set(parsed.service_names()) == ALL_SERVICES


def test_missing_secret_stops_compose() -> None:
    env = compose_env()
    for name in (
        "JWT_SECRET",
        "SECRET_KEY",
        "RABBITMQ_PASSWORD",
        "FLOWER_BASIC_AUTH",
        "GRAFANA_ADMIN_PASSWORD",
    ):
        without = {k: v for k, v in env.items() if k != name}
        with pytest.raises(MissingVariable, match=name):
            interpolate(raw_compose(), without)
        # The empty value .env.example ships with counts as missing too.
        with pytest.raises(MissingVariable, match=name):
            interpolate(raw_compose(), {**without, name: ""})


def test_production_by_default(services: dict[str, Any]) -> None:
    for name in set(API_PORTS) | set(WORKERS) | {"beat", "flower"}:
        assert services[name]["environment"]["ENVIRONMENT"] == "production", name
    assert read_env_file(ENV_EXAMPLE)["ENVIRONMENT"] == "production"


# --- health, order, restarts ------------------------------------------------------------------


def test_every_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        check = svc.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable"), name
        test = check["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), name
        for key in ("interval", "timeout", "retries", "start_period"):
            assert key in check, f"{name}: healthcheck.{key}"


def test_python_healthchecks_hit_the_right_port(services: dict[str, Any]) -> None:
    for name, port in API_PORTS.items():
        test = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/health" in test, name
    for name, (_, _, _, port) in WORKERS.items():
        test = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/metrics" in test, name


def test_depends_on_waits_for_health(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on must use the long form with a condition"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert spec == {"condition": "service_healthy"}, f"{name} -> {dep}: {spec}"
    app_services = set(API_PORTS) | set(WORKERS) | {"beat", "flower"}
    for name in app_services:
        deps = services[name]["depends_on"]
        assert {"redis", "rabbitmq"} <= set(deps), f"{name} must wait for redis and rabbitmq"
    assert {"task-service", "scraping-service", "notification-service"} <= set(
        services["gateway"]["depends_on"]
    )


def test_restart_policies(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), name


# --- ports ------------------------------------------------------------------------------------


def test_only_the_allowed_services_publish_ports(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        ports = published_ports(svc)
        if name not in PUBLISHED:
            assert not ports, f"{name} must not be published on the host: {ports}"
            continue
        assert {p[2] for p in ports} == PUBLISHED[name], name


def test_gateway_on_8000_operator_uis_on_loopback(services: dict[str, Any]) -> None:
    (gw,) = published_ports(services["gateway"])
    assert gw == (None, 8000, 8000)
    for name in ("rabbitmq", "flower", "prometheus", "grafana"):
        for host_ip, _, _ in published_ports(services[name]):
            assert host_ip == "127.0.0.1", f"{name} is published beyond loopback by default"


def test_api_ports_agree_with_the_contract(services: dict[str, Any]) -> None:
    for name, port in API_PORTS.items():
        # The gateway also exposes GATEWAY_METRICS_PORT (9100) on the compose network.
        extra = [GATEWAY_METRICS_PORT] if name == "gateway" else []
        assert [int(p) for p in services[name]["expose"]] == [port, *extra], name


def test_gateway_metrics_port_is_exposed_but_never_published(services: dict[str, Any]) -> None:
    gateway = services["gateway"]
    assert str(GATEWAY_METRICS_PORT) in [str(p) for p in gateway["expose"]]
    assert GATEWAY_METRICS_PORT not in {p[1] for p in published_ports(gateway)}
    assert GATEWAY_METRICS_PORT not in {p[2] for p in published_ports(gateway)}


def test_api_ports_agree_with_the_contract_document() -> None:
    """docs/api.md, the contract kept in the repository, lists the ports in its Ports table."""
    text = (REPO / "docs" / "api.md").read_text()
    m = re.search(r"^### Ports\n(.+?)(?:\n#|\Z)", text, re.MULTILINE | re.DOTALL)
    assert m, "docs/api.md has a '### Ports' table"
    found = {
        name: int(port)
        for name, port in re.findall(r"^\| ([a-z-]+) \| (\d{4}) \|$", m.group(1), re.MULTILINE)
    }
    assert found == API_PORTS


def test_worker_metrics_ports(services: dict[str, Any]) -> None:
    for name, (_, _, _, port) in WORKERS.items():
        svc = services[name]
        assert svc["environment"]["WORKER_METRICS_PORT"] == str(port), name
        assert [int(p) for p in svc["expose"]] == [port], name
        # Scaled replicas must not fight over a host port or a fixed container name.
        assert "container_name" not in svc and "ports" not in svc, name


def test_containers_listen_on_all_interfaces(services: dict[str, Any]) -> None:
    for name in set(API_PORTS) | set(WORKERS):
        assert services[name]["environment"]["HOST"] == "0.0.0.0", name


def test_services_reach_each_other_by_compose_name(services: dict[str, Any]) -> None:
    env = services["gateway"]["environment"]
    for name, port in API_PORTS.items():
        if name == "gateway":
            continue
        key = name.replace("-", "_").upper() + "_URL"
        assert env[key] == f"http://{name}:{port}", key
    assert env["REDIS_HOST"] == "redis" and env["RABBITMQ_HOST"] == "rabbitmq"


# --- roles: one worker per queue, one beat, flower behind auth -----------------------------------


def test_one_worker_per_queue(services: dict[str, Any]) -> None:
    queues = []
    for name, (module, queue, node, _) in WORKERS.items():
        cmd = command_of(services[name])
        assert cmd[:5] == ["celery", "-A", module, "worker", "-Q"], name
        assert cmd[5] == queue, name
        assert cmd[6:8] == ["-n", f"{node}@%h"], name
        assert any(c.startswith("--concurrency=") for c in cmd), f"{name}: set --concurrency explicitly"
        queues.append(queue)
    assert sorted(queues) == ["default", "notifications", "scraping"]


def test_queues_match_the_code() -> None:
    code = (REPO / "shared" / "shared" / "_queues.py").read_text()
    declared = set(re.findall(r'^\s+[A-Z]+ = "([a-z]+)"', code, re.MULTILINE))
    assert declared == {q for _, q, _, _ in WORKERS.values()}


def test_beat_is_single(services: dict[str, Any]) -> None:
    beat = services["beat"]
    cmd = command_of(beat)
    assert cmd[:4] == ["celery", "-A", "task_service.beat", "beat"]
    assert beat.get("deploy", {}).get("replicas", 1) == 1
    assert "scale" not in beat
    # The schedule and pid files must be on the writable tmpfs (the root filesystem is read-only).
    assert "--schedule=/tmp/celerybeat-schedule" in cmd and "--pidfile=/tmp/celerybeat.pid" in cmd


def test_flower_requires_auth(services: dict[str, Any]) -> None:
    flower = services["flower"]
    cmd = command_of(flower)
    assert cmd[:4] == ["celery", "-A", "task_service.worker", "flower"]
    auth = flower["environment"].get("FLOWER_BASIC_AUTH") or next(
        (c.split("=", 1)[1] for c in cmd if c.startswith("--basic-auth=")), ""
    )
    user, _, password = auth.partition(":")
    assert user and password, "Flower must run behind basic auth"
    assert not any(c.startswith("--basic-auth") for c in cmd), "keep the password out of the process list"
    assert flower["build"]["target"] == "flower"
    # The app containers' event stream is what Flower shows.
    for name in WORKERS:
        assert services[name]["environment"]["CELERY_SEND_EVENTS"] == "true"


def test_app_containers_are_hardened(services: dict[str, Any]) -> None:
    for name in set(API_PORTS) | set(WORKERS) | {"beat", "flower"}:
        svc = services[name]
        assert svc.get("read_only") is True, name
        assert any(str(t).startswith("/tmp") for t in svc.get("tmpfs", [])), name
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
        assert svc.get("cap_drop") == ["ALL"], name
        assert "user" not in svc or svc["user"] not in ("root", "0"), name


def test_images_and_builds(services: dict[str, Any]) -> None:
    for name, _module in API_MODULES.items():
        build = services[name]["build"]
        assert build["context"] == "."
        dockerfile = REPO / build["dockerfile"]
        assert dockerfile.is_file(), dockerfile
        assert dockerfile.name == f"{name}.Dockerfile"
    owner = {
        "task-worker": "task-service",
        "scraping-worker": "scraping-service",
        "notification-worker": "notification-service",
        "beat": "task-service",
    }
    for name, api in owner.items():
        assert services[name]["image"] == services[api]["image"], f"{name} runs the {api} image"
        # Built once, by its API: a second `build` would build the same image again.
        assert "build" not in services[name], f"{name} reuses the {api} image by name"
        assert services[name]["pull_policy"] == "never", f"{name}'s image is built here, never pulled"


def test_each_image_is_built_once(services: dict[str, Any]) -> None:
    builds = {name: svc["image"] for name, svc in services.items() if "build" in svc}
    assert sorted(builds.values()) == sorted(set(builds.values())), builds
    assert len(builds) == 5  # gateway, the three services, flower
    for name, svc in services.items():
        if "build" not in svc and svc["image"].startswith("smartapp/"):
            assert svc["image"] in builds.values(), f"{name} runs an image nothing builds"


def test_config_files_mounted_exist(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"


# --- commands name modules that import ------------------------------------------------------------

# Runs in a fresh interpreter: importing a Celery app module must not need any service running.
_CHECK = r"""
import importlib, importlib.util, json, sys
kind, module = sys.argv[1], sys.argv[2]
if kind == "python-m":
    spec = importlib.util.find_spec(module)
    if spec is None:
        sys.exit(f"no module {module}")
    if spec.submodule_search_locations is not None and importlib.util.find_spec(module + ".__main__") is None:
        sys.exit(f"{module} is a package without __main__")
    importlib.import_module(module)
elif kind == "celery-app":
    from celery import Celery
    from celery.app.utils import find_app
    app = find_app(module)
    if not isinstance(app, Celery):
        sys.exit(f"{module} has no Celery app")
print("ok")
"""


def commands_in_compose() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for svc in resolved_compose()["services"].values():
        cmd = svc.get("command")
        if not isinstance(cmd, list):
            continue
        if cmd[:2] == ["python", "-m"]:
            found.add(("python-m", cmd[2]))
        elif cmd[:2] == ["celery", "-A"]:
            found.add(("celery-app", cmd[2]))
    return found


EXPECTED_COMMANDS = (
    {("python-m", m) for m in API_MODULES.values()}
    | {("celery-app", m) for m, _, _, _ in WORKERS.values()}
    | {("celery-app", "task_service.beat")}
    | {("python-m", "task_service.scheduler")}
)


def test_compose_commands_are_the_contract() -> None:
    assert commands_in_compose() == EXPECTED_COMMANDS


@pytest.mark.parametrize(("kind", "module"), sorted(EXPECTED_COMMANDS))
def test_command_module_imports(kind: str, module: str) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "WORKER_METRICS_PORT")
    }
    proc = subprocess.run(
        [sys.executable, "-c", _CHECK, kind, module],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, f"{kind} {module}: {proc.stdout}{proc.stderr[-2000:]}"


def test_cache_has_a_redis_of_its_own_and_state_is_never_evicted(services: dict[str, Any]) -> None:
    state, cache = services["redis"]["command"], services["redis-cache"]["command"]
    assert state[state.index("--maxmemory-policy") + 1] == "noeviction"
    assert state[state.index("--appendonly") + 1] == "yes"
    assert cache[cache.index("--maxmemory-policy") + 1] == "allkeys-lru"
    # A cache entry lives up to 30 days: it survives `down` and `up` (make test-compose checks it).
    assert cache[cache.index("--appendonly") + 1] == "yes"
    assert any(v.startswith("redis-cache-data:") for v in services["redis-cache"]["volumes"])
    assert services["task-service"]["environment"]["CACHE_REDIS_URL"] == "redis://redis-cache:6379/0"
    assert "redis-cache" in services["task-service"]["depends_on"]
