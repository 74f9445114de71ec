"""The Dockerfiles: one per service, multi-stage with uv on the frozen lock, non-root, with a
HEALTHCHECK. Docker cannot build here, so each file is parsed and held to those rules."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "deploy" / "docker"
SERVICES = {
    # directory / distribution name: (package, API port)
    "gateway": ("gateway", 8000),
    "task-service": ("task_service", 8001),
    "scraping-service": ("scraping_service", 8002),
    "notification-service": ("notification_service", 8003),
}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [args for o, args in self.instructions if o == op]


def parse_dockerfile(path: Path) -> tuple[list[tuple[str, str]], list[Stage]]:
    """(instructions before the first FROM, stages); continuation lines joined, comments dropped."""
    logical: list[str] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, f"{path.name}: dangling line continuation"
    preamble: list[tuple[str, str]] = []
    stages: list[Stage] = []
    for line in logical:
        op, _, args = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif stages:
            stages[-1].instructions.append((op, args.strip()))
        else:
            preamble.append((op, args.strip()))
    return preamble, stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def effective_user(stages: list[Stage], stage: Stage) -> str | None:
    """The USER a stage runs as, following FROM <earlier stage> chains."""
    by_name = {s.name: s for s in stages if s.name}
    current: Stage | None = stage
    while current is not None:
        users = current.all("USER")
        if users:
            return users[-1]
        current = by_name.get(current.base)
    return None


@pytest.fixture(params=sorted(SERVICES), ids=sorted(SERVICES))
def service(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_one_dockerfile_per_service() -> None:
    found = {p.name.removesuffix(".Dockerfile") for p in DOCKER.glob("*.Dockerfile")}
    assert found == set(SERVICES)


def test_multi_stage_with_uv_on_the_frozen_lock(service: str) -> None:
    preamble, stages = parse_dockerfile(DOCKER / f"{service}.Dockerfile")
    names = [s.name for s in stages]
    assert "builder" in names and names[-1] == "runtime", f"the default (last) stage is runtime: {names}"
    builder = stages[names.index("builder")]
    syncs = [r for r in builder.all("RUN") if "uv sync" in r]
    assert syncs, "the builder installs with uv sync"
    for run in syncs:
        argv = shlex.split(run[run.index("uv sync") :])
        assert "--frozen" in argv, run
        assert "--no-dev" in argv, run
        assert argv[argv.index("--package") + 1] == service, run
    # The final install puts our code in as wheels, so the runtime needs no source tree.
    assert "--no-editable" in syncs[-1]
    # The runtime stages do not carry uv or the build tree along.
    for stage in stages:
        if stage.name in ("runtime", "base", "flower"):
            for copy in stage.all("COPY"):
                assert "--from=builder" not in copy or "/app/.venv" in copy, copy
                assert "/uv " not in copy, copy
    args = dict(a.split("=", 1) for op, a in preamble if op == "ARG")
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim"), "small base, same Python as the lock"
    assert any(s.base == "${PYTHON_IMAGE}" and s.name == "builder" for s in stages)
    assert any(s.base == "${PYTHON_IMAGE}" and s.name == "base" for s in stages), (
        "runtime and builder share one Python image, so the venv's interpreter path stays valid"
    )


def local_uv_version() -> str:
    """The version of the uv that runs this suite and writes uv.lock, never found by name on
    PATH (`make` installs uv with `pip --user`, which PATH may not hold): `uv run` names its
    own binary in $UV; otherwise uv as a module of this interpreter or of the Python it was
    made from (a virtualenv's base, where `pip install --user uv` puts it)."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    tried: list[str] = []
    commands = [[os.environ["UV"], "--version"]] if os.environ.get("UV") else []
    commands += [[sys.executable, "-m", "uv", "--version"], [str(base), "-m", "uv", "--version"]]
    for command in commands:
        try:
            proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
        except OSError as exc:
            tried.append(f"{command[0]}: {exc}")
            continue
        m = re.search(r"\buv (\d+\.\d+\.\d+)", proc.stdout)
        if proc.returncode == 0 and m:
            return m.group(1)
        tried.append(f"{' '.join(command)}: {(proc.stdout + proc.stderr).strip()[:200]}")
    pytest.fail(
        "no uv found to compare with the images' (run the suite with `make test`):\n" + "\n".join(tried)
    )


def test_uv_image_is_recent_enough_for_the_lock(service: str) -> None:
    preamble, _ = parse_dockerfile(DOCKER / f"{service}.Dockerfile")
    args = dict(a.split("=", 1) for op, a in preamble if op == "ARG")
    pinned = tuple(int(x) for x in args["UV_VERSION"].split("."))
    version = local_uv_version()
    local = tuple(int(x) for x in version.split("."))
    assert pinned[:2] >= local[:2], (
        f"uv {args['UV_VERSION']} in the image is older than uv {version} that writes uv.lock"
    )


def test_runs_as_non_root(service: str) -> None:
    _, stages = parse_dockerfile(DOCKER / f"{service}.Dockerfile")
    for stage in stages:
        if stage.name in ("runtime", "flower"):
            user = effective_user(stages, stage)
            assert user is not None, f"{stage.name}: no USER"
            uid = user.split(":")[0]
            assert uid.isdigit() and int(uid) != 0, f"{stage.name}: USER {user} (numeric, non-root)"


def test_healthcheck_and_command(service: str) -> None:
    package, port = SERVICES[service]
    _, stages = parse_dockerfile(DOCKER / f"{service}.Dockerfile")
    runtime = stages[-1]
    (health,) = runtime.all("HEALTHCHECK")
    assert "--interval=" in health and "--timeout=" in health
    cmd = exec_form(health[health.index("CMD") + 3 :].strip())
    assert cmd[:2] == ["python", "-c"], "no curl in a slim image: python's urllib does the check"
    assert f"http://127.0.0.1:{port}/health" in cmd[2]
    assert runtime.all("EXPOSE") == [str(port)]
    (command,) = runtime.all("CMD")
    assert exec_form(command) == ["python", "-m", package]


def test_copied_paths_exist(service: str) -> None:
    _, stages = parse_dockerfile(DOCKER / f"{service}.Dockerfile")
    for stage in stages:
        for copy in stage.all("COPY"):
            argv = [a for a in shlex.split(copy) if not a.startswith("--")]
            if any(a.startswith("--from") for a in shlex.split(copy)):
                continue
            for source in argv[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        for run in stage.all("RUN"):
            for m in re.finditer(r"--mount=type=bind,source=([^,\s]+)", run):
                assert (REPO / m.group(1)).exists(), m.group(1)


def test_every_workspace_member_pyproject_is_copied(service: str) -> None:
    # uv checks the whole workspace against the lock, even for one --package.
    _, stages = parse_dockerfile(DOCKER / f"{service}.Dockerfile")
    copied = " ".join(stages[[s.name for s in stages].index("builder")].all("COPY"))
    members = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    assert {"shared", "testkit", *SERVICES} <= set(members)
    for member in members:
        assert f"{member}/pyproject.toml" in copied, member
    assert "uv.lock" in copied


def test_images_leave_the_test_helpers_out(service: str) -> None:
    # testkit (the tests' process manager) is a dev-group member: --no-dev --package <service>
    # installs it only if a service depends on it, and only its pyproject enters the build.
    _, stages = parse_dockerfile(DOCKER / f"{service}.Dockerfile")
    copies = [c for stage in stages for c in stage.all("COPY")]
    assert [c for c in copies if "testkit" in c] == ["testkit/pyproject.toml testkit/"]
    for member in ("shared", *SERVICES):
        project = tomllib.loads((REPO / member / "pyproject.toml").read_text())["project"]
        assert not any(d.startswith("testkit") for d in project["dependencies"]), member


def test_dockerignore_beside_each_dockerfile(service: str) -> None:
    ignore = (DOCKER / f"{service}.Dockerfile.dockerignore").read_text().splitlines()
    for pattern in (".git", ".env", "**/.venv", "**/__pycache__"):
        assert pattern in ignore, pattern
    reference = (DOCKER / "gateway.Dockerfile.dockerignore").read_text()
    assert (DOCKER / f"{service}.Dockerfile.dockerignore").read_text() == reference


def test_flower_target_pinned_with_hashes() -> None:
    _, stages = parse_dockerfile(DOCKER / "task-service.Dockerfile")
    flower = next(s for s in stages if s.name == "flower")
    assert flower.base == "base"
    (run,) = flower.all("RUN")
    assert "--require-hashes" in run and "--no-deps" in run
    lines = (DOCKER / "flower-requirements.txt").read_text().splitlines()
    reqs = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    pins = re.findall(r"^([a-z0-9_.-]+)==([^\s\\]+)", reqs, re.MULTILINE)
    assert {name for name, _ in pins} >= {"flower", "tornado", "humanize", "pytz"}
    blocks = re.split(r"\n(?=[a-z])", reqs.strip())
    assert len(blocks) == len(pins)
    for block in blocks:
        assert "--hash=sha256:" in block, block.splitlines()[0]
    (command,) = flower.all("CMD")
    assert exec_form(command)[:4] == ["celery", "-A", "task_service.worker", "flower"]
    assert effective_user(stages, flower) == "10001:10001"


def test_no_syntax_directive_so_builds_pull_no_frontend_image(service: str) -> None:
    # `# syntax=...` makes BuildKit fetch a frontend image from a registry before building; the
    # built-in frontend supports RUN --mount, so builds need only base images and the index.
    for line in (DOCKER / f"{service}.Dockerfile").read_text().splitlines():
        if not line.startswith("#"):
            break  # parser directives come only before the first instruction or blank line
        assert not re.match(r"#\s*syntax\s*=", line, re.IGNORECASE), line
