"""`make test-compose`: the whole platform under docker compose, checked end to end.

On a fresh copy of the repository (`git archive HEAD`, so uncommitted changes are not in it)
with a `.env` written by `make env` there, it builds every image, starts the stack with
`docker compose up --wait`, and then, through the published gateway with a token made the
way the README says (`make -s token`):

- runs the README's flows: a background task and its status, a long-running task with its
  progress, the cache (put, get, delete), a notification to a webhook device (signature
  verified), a scrape summarised by a model;
- checks that beat's entries reach their queue (the notification worker receives them);
- scales task-worker to two and shows both replicas take work;
- restarts the stack (`down`, `up --wait`, volumes kept) and reads back a cache entry and a
  task record;
- ends with `down -v`, also when a step fails or the run is interrupted.

Each step prints what it took. Nothing leaves this machine: the outside world (a web page, an
OpenAI-compatible endpoint, a webhook receiver) is `sink`, a container of the stack
(deploy/compose/sink.py, added by deploy/compose/check.override.yml). The stack has a project
name of its own and free loopback ports, so it disturbs neither a `make run` nor another
compose project on the machine; its images are tagged `compose-check`, not `latest`.

Docker: needs Docker with BuildKit and Compose v2.24 or newer, and the base images (pulled,
or built locally). On a machine that reaches no image registry,
`../shared/tools/docker-offline/setup.sh` installs Docker and builds local stand-ins for the
base images; when that script exists and we run as root, this check runs it when something is
missing (it is idempotent), as `make test` installs its own Debian tools. Elsewhere it says
what is missing and stops.

    make test-compose                            # or: python deploy/compose/check.py [--keep]

--keep leaves the copy and the logs (.run/compose-check/<project>/) behind; the logs are kept
anyway when a step fails.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO.parent / "shared" / "tools" / "docker-offline" / "setup.sh"
OVERRIDE = "deploy/compose/check.override.yml"
API = "/smart_application/tasks"
IMAGE_TAG = "compose-check"
MIN_COMPOSE = (2, 24)  # `!override` in the check's override file
# The stack's published ports (every `${..._PUBLISH_PORT:-n}` in docker-compose.yml), each
# given a free port for the check.
PORT_VARIABLES = sorted(
    set(re.findall(r"\$\{([A-Z0-9_]+_PUBLISH_PORT)\b", (REPO / "docker-compose.yml").read_text()))
)
# Added to the copy's .env: the stand-ins in `sink` are reached over plain http on a private
# address, which only the allowlist permits.
CHECK_SETTINGS = {
    "OUTBOUND_ALLOWLIST": "sink:8080",
    "OPENAI_BASE_URL": "http://sink:8080/v1",
}
SUMMARY = "A page about the compose check, summarised by the stand-in model."

T0 = time.monotonic()


class CheckFailed(Exception):
    pass


def say(message: str) -> None:
    print(message, flush=True)


@contextlib.contextmanager
def step(name: str) -> Iterator[dict[str, str]]:
    """Time one step and print it; the body may put a short result in out['detail']."""
    out: dict[str, str] = {}
    start = time.monotonic()
    try:
        yield out
    except BaseException:
        say(f"  [FAIL {time.monotonic() - start:6.1f}s] {name}")
        raise
    detail = f": {out['detail']}" if out.get("detail") else ""
    say(f"  [ok   {time.monotonic() - start:6.1f}s] {name}{detail}")


def run(
    argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600
) -> str:
    proc = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise CheckFailed(
            f"{' '.join(argv)} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}"
        )
    return proc.stdout


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise CheckFailed(f"{what}: not within {timeout:.0f}s (last: {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- prerequisites ----------------------------------------------------------------------------


def base_images() -> list[str]:
    """Images the build and the stack start from (not ours): FROM arguments and service images."""
    images = set()
    for dockerfile in (REPO / "deploy" / "docker").glob("*.Dockerfile"):
        args = dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile.read_text(), re.MULTILINE))
        images.add(args["PYTHON_IMAGE"])
        images.add(f"ghcr.io/astral-sh/uv:{args['UV_VERSION']}")
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    for svc in compose["services"].values():
        if "build" not in svc and not svc["image"].startswith("${IMAGE_PREFIX"):
            images.add(svc["image"])
    return sorted(images)


def missing_prerequisites() -> list[str]:
    if shutil.which("docker") is None:
        return ["the docker CLI"]
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return ["a running Docker daemon (docker info fails)"]
    version = subprocess.run(
        ["docker", "compose", "version", "--short"], capture_output=True, text=True, check=False
    )
    found = re.match(r"v?(\d+)\.(\d+)", version.stdout.strip())
    if version.returncode != 0 or not found:
        return ["Compose v2 (docker compose)"]
    if tuple(int(x) for x in found.groups()) < MIN_COMPOSE:
        return [f"Compose {'.'.join(map(str, MIN_COMPOSE))} or newer (found {version.stdout.strip()})"]
    absent = [
        image
        for image in base_images()
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode
    ]
    return [f"base image {image}" for image in absent]


def ensure_prerequisites() -> str:
    missing = missing_prerequisites()
    if missing and SETUP.is_file() and os.geteuid() == 0:
        say(f"  missing: {', '.join(missing)}; running {SETUP} (idempotent, minutes the first time)")
        subprocess.run(["bash", str(SETUP)], check=False)
        missing = missing_prerequisites()
    if missing:
        hint = (
            f"on a machine without registry access run: bash {SETUP} (as root)"
            if SETUP.is_file()
            else "install Docker Engine with Compose v2.24+, and pull the base images (docker compose pull)"
        )
        raise CheckFailed(f"missing: {', '.join(missing)}; {hint}")
    server = run(["docker", "version", "--format", "{{.Server.Version}}"]).strip()
    compose = run(["docker", "compose", "version", "--short"]).strip()
    return f"docker {server}, compose {compose}, {len(base_images())} base images present"


# --- the stack --------------------------------------------------------------------------------


class Stack:
    def __init__(self, copy: Path, project: str, logs: Path) -> None:
        self.copy = copy
        self.project = project
        self.logs = logs
        self.ports = {name: free_port() for name in PORT_VARIABLES}
        self.env = {
            **os.environ,
            "IMAGE_TAG": IMAGE_TAG,
            "PUBLISH_HOST": "127.0.0.1",
            **{k: str(v) for k, v in self.ports.items()},
        }
        self.gateway = f"http://127.0.0.1:{self.ports['GATEWAY_PUBLISH_PORT']}"

    def compose(self, *args: str, timeout: float = 900) -> str:
        argv = ["docker", "compose", "-p", self.project, "-f", "docker-compose.yml", "-f", OVERRIDE, *args]
        return run(argv, cwd=self.copy, env=self.env, timeout=timeout)

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).split()

    def logs_of(self, container: str) -> tuple[str, str]:
        proc = subprocess.run(
            ["docker", "logs", container], capture_output=True, text=True, timeout=60, check=False
        )
        return proc.stdout, proc.stderr

    def service_logs(self, service: str) -> str:
        return "".join(out + err for c in self.containers(service) for out, err in [self.logs_of(c)])

    def save_logs(self) -> None:
        with contextlib.suppress(Exception):
            (self.logs / "compose.log").write_text(self.compose("logs", "--no-color", "--timestamps"))


def check_ports(stack: Stack) -> str:
    """Every host port the stack publishes is one the check chose, on loopback."""
    config = json.loads(stack.compose("config", "--format", "json"))
    published = [
        (name, str(port.get("host_ip") or "0.0.0.0"), int(port["published"]))
        for name, svc in config["services"].items()
        for port in svc.get("ports", [])
    ]
    chosen = set(stack.ports.values())
    stray = [p for p in published if p[2] not in chosen or p[1] != "127.0.0.1"]
    if stray:
        raise CheckFailed(f"published beyond the check's loopback ports (set a *_PUBLISH_PORT): {stray}")
    return ", ".join(f"{name} {port}" for name, _, port in sorted(published))


def make_copy(dest: Path) -> str:
    head = run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]).strip()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", "HEAD"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    dirty = run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"]).strip()
    return f"HEAD {head}" + (" (uncommitted changes are not in the copy)" if dirty else "")


def shell_env() -> dict[str, str]:
    """The environment of a user's shell: without the virtualenv `uv run` put us in."""
    venv = os.environ.get("VIRTUAL_ENV", str(REPO / ".venv"))
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not p.startswith(venv)]
    drop = {"VIRTUAL_ENV", "UV", "UV_RUN_RECURSION_DEPTH", "PYTHONHOME"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "PATH": os.pathsep.join(path)}


def write_env(copy: Path) -> str:
    run(["make", "-s", "env"], cwd=copy, env=shell_env(), timeout=600)
    env_file = copy / ".env"
    with env_file.open("a") as fh:
        fh.write("\n# Added by deploy/compose/check.py: the stand-ins live in the `sink` container.\n")
        for key, value in CHECK_SETTINGS.items():
            fh.write(f"{key}={value}\n")
    return f"{env_file.name} from make env, plus {', '.join(CHECK_SETTINGS)}"


def readme_token(copy: Path) -> str:
    """The README's way: export YOUR_TOKEN=$(make -s token SUB=user123 SCOPES="tasks scrape cache")."""
    text = (copy / "README.md").read_text()
    command = 'make -s token SUB=user123 SCOPES="tasks scrape cache"'
    if command not in text:
        raise CheckFailed(f"the README no longer says {command!r}; update the check with it")
    argv = ["make", "-s", "token", "SUB=user123", "SCOPES=tasks scrape cache"]
    token = run(argv, cwd=copy, env=shell_env(), timeout=600).strip()
    if token.count(".") != 2:
        raise CheckFailed(f"make token printed no JWT: {token[:200]!r}")
    return token


# --- the flows --------------------------------------------------------------------------------


def wait_status(client: httpx.Client, task_id: str, want: set[str], timeout: float = 120) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        r = client.get(f"{API}/task-status/{task_id}")
        if r.status_code != 200:
            raise CheckFailed(f"task-status {task_id}: {r.status_code} {r.text[:300]}")
        body: dict[str, Any] = r.json()
        if body["status"] in {"FAILURE", "REVOKED"} - want:
            raise CheckFailed(f"task {task_id} ended {body['status']}: {body}")
        return body if body["status"] in want else None

    result: dict[str, Any] = wait_for(f"task {task_id} to reach {want}", probe, timeout, 0.3)
    return result


def expect(response: httpx.Response, status: int) -> dict[str, Any]:
    if response.status_code != status:
        raise CheckFailed(
            f"{response.request.method} {response.request.url.path}: {response.status_code}, "
            f"expected {status}: {response.text[:500]}"
        )
    return response.json() if response.content else {}


def flow_background_task(client: httpx.Client) -> tuple[str, str]:
    accepted = expect(
        client.post(
            f"{API}/background-task/", json={"task_type": "data_processing", "data": {"input": "sample_data"}}
        ),
        202,
    )
    done = wait_status(client, accepted["task_id"], {"SUCCESS"})
    if done["result"]["processed"] != {"input": "sample_data"}:
        raise CheckFailed(f"unexpected result: {done['result']}")
    return accepted["task_id"], f"task {accepted['task_id'][:8]} SUCCESS on queue {accepted['queue']}"


def flow_long_running(client: httpx.Client) -> str:
    accepted = expect(client.post(f"{API}/long-running-task/", json={"steps": 5, "step_seconds": 1}), 202)
    tid = accepted["task_id"]
    seen: list[int] = []

    def probe() -> dict[str, Any] | None:
        progress = expect(client.get(f"{API}/task-progress/{tid}"), 200)
        if not seen or progress["current"] != seen[-1]:
            seen.append(progress["current"])
        return progress if progress["status"] == "SUCCESS" else None

    final = wait_for(f"long-running task {tid}", probe, 120, 0.2)
    if seen != sorted(seen) or (final["current"], final["total"], final["percent"]) != (5, 5, 100.0):
        raise CheckFailed(f"progress went {seen}, ended {final}")
    if len([c for c in seen if 0 < c < 5]) < 2:
        raise CheckFailed(f"progress was not seen moving: {seen}")
    return f"progress {' -> '.join(map(str, seen))} of 5, SUCCESS"


def flow_cache(client: httpx.Client) -> str:
    expect(client.put(f"{API}/cache/check-temp", json={"value": {"n": 1}, "ttl": 600}), 200)
    got = expect(client.get(f"{API}/cache/check-temp"), 200)
    if got["value"] != {"n": 1} or not 0 < got["ttl"] <= 600:
        raise CheckFailed(f"cache get: {got}")
    expect(client.delete(f"{API}/cache/check-temp"), 204)
    expect(client.get(f"{API}/cache/check-temp"), 404)
    # Kept for the restart step: it must survive `down` and `up`.
    expect(client.put(f"{API}/cache/survivor", json={"value": {"kept": True}, "ttl": 3600}), 200)
    return "put, get, delete, get 404; 'survivor' kept for the restart"


def verify_webhook(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks: base64 HMAC-SHA256 of '{id}.{timestamp}.{body}' with the whsec_ key."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(sig.partition(",")[2], expected) for sig in headers["webhook-signature"].split()
    )


def flow_notification(client: httpx.Client, stack: Stack) -> str:
    device = expect(
        client.post(
            f"{API}/devices/",
            json={"channel": "webhook", "url": "http://sink:8080/hook", "name": "compose check"},
        ),
        201,
    )
    sent = expect(
        client.post(
            f"{API}/send-notification/",
            json={
                "user_id": "user123",
                "title": "Task Completed",
                "message": "Your background task has finished",
                "data": {"task_id": "abc123"},
            },
        ),
        202,
    )
    nid = sent["notification_id"]

    def delivered() -> dict[str, Any] | None:
        status = expect(client.get(f"{API}/notification-status/{nid}"), 200)
        if status["status"] in ("failed", "partially_delivered"):
            raise CheckFailed(f"notification {nid}: {status}")
        return status if status["status"] == "delivered" else None

    wait_for(f"notification {nid} delivered", delivered, 120)
    hooks = []
    for line in stack.service_logs("sink").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("path") == "/hook":
                hooks.append(record)
    for hook in hooks:
        body = base64.b64decode(hook["body"])
        if b"Task Completed" in body:
            if not verify_webhook(device["secret"], hook["headers"], body):
                raise CheckFailed(f"the webhook's signature does not verify: {hook['headers']}")
            return f"notification {nid[:8]} delivered to the webhook device, signature verified"
    raise CheckFailed(f"the sink received no delivery of {nid}: {hooks}")


def flow_scrape(client: httpx.Client) -> str:
    accepted = expect(
        client.post(
            f"{API}/background-scraping/",
            json={"url": "http://sink:8080/page", "openai_key": "sk-compose-check", "model": "gpt-4o"},
        ),
        202,
    )
    done = wait_status(client, accepted["task_id"], {"SUCCESS"})
    result = done["result"]
    if result["summary"] != SUMMARY or result["title"] != "Compose check page":
        raise CheckFailed(f"scrape result: {json.dumps(result)[:800]}")
    if "openai_key" in json.dumps(done) or "sk-compose-check" in json.dumps(done):
        raise CheckFailed("the OpenAI key shows in the task's status")
    return f"page fetched ({len(result['markdown'])} chars of markdown), summary from the model, usage {result['usage']}"


# --- beat, scaling, restart -------------------------------------------------------------------

# Run inside the beat container: every entry through beat's own scheduler and send path.
SEND_EVERY_ENTRY = """
import json
from task_service.beat import CheckedScheduler, app
s = CheckedScheduler(app=app, schedule_filename="/tmp/compose-check-schedule", lazy=False)
sent = {e.task: s.apply_async(e).id for n, e in s.schedule.items() if not n.startswith("celery.")}
s.close()
print(json.dumps(sent))
"""


def check_beat(stack: Stack) -> str:
    (beat,) = stack.containers("beat")
    health = run(["docker", "inspect", "--format", "{{.State.Health.Status}}", beat]).strip()
    if health != "healthy":
        raise CheckFailed(f"beat is {health}")
    # beat's own first sweep comes a minute after it started.
    wait_for(
        "beat's own notifications.sweep_stuck to reach the notification worker",
        lambda: re.search(
            r"notifications\.sweep_stuck\[[0-9a-f-]+\] received", stack.service_logs("notification-worker")
        ),
        150,
        2,
    )
    sent: dict[str, str] = json.loads(stack.compose("exec", "-T", "beat", "python", "-c", SEND_EVERY_ENTRY))
    for task, tid in sent.items():
        wait_for(
            f"{task} ({tid}) received by the notification worker",
            lambda tid=tid: f"[{tid}] received" in stack.service_logs("notification-worker"),  # type: ignore[misc]
            60,
            1,
        )
    _, err = stack.logs_of(beat)
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    if not records or {r.get("service") for r in records} != {"beat"}:
        raise CheckFailed(f"beat's log lines are not its JSON: {err[-1000:]}")
    errors = [r for r in records if r.get("level") in ("error", "critical")]
    if errors:
        raise CheckFailed(f"beat logged errors: {errors[:3]}")
    return (
        f"beat healthy; its sweep arrived; every entry ({', '.join(sorted(sent))}) reached queue "
        f"notifications; {len(records)} JSON log lines, no errors"
    )


def check_scale(client: httpx.Client, stack: Stack) -> str:
    stack.compose("up", "-d", "--wait", "--scale", "task-worker=2")
    workers = stack.containers("task-worker")
    if len(workers) != 2:
        raise CheckFailed(f"task-worker replicas: {workers}")
    ids = [
        expect(client.post(f"{API}/long-running-task/", json={"steps": 3, "step_seconds": 0.5}), 202)[
            "task_id"
        ]
        for _ in range(8)
    ]
    for tid in ids:
        wait_status(client, tid, {"SUCCESS"})
    shares = []
    for container in workers:
        out, err = stack.logs_of(container)
        shares.append(sum(f"[{tid}] received" in out + err for tid in ids))
    if sum(shares) != len(ids) or min(shares) == 0:
        raise CheckFailed(f"tasks per replica: {shares}")
    return f"2 replicas took {shares[0]} and {shares[1]} of {len(ids)} tasks"


def check_restart(client: httpx.Client, stack: Stack, task_id: str) -> str:
    stack.compose("down")
    stack.compose("up", "-d", "--wait")
    cached = expect(client.get(f"{API}/cache/survivor"), 200)
    if cached["value"] != {"kept": True}:
        raise CheckFailed(f"cache after restart: {cached}")
    record = expect(client.get(f"{API}/task-status/{task_id}"), 200)
    if record["status"] != "SUCCESS" or record["result"]["processed"] != {"input": "sample_data"}:
        raise CheckFailed(f"task record after restart: {record}")
    return f"cache entry and task {task_id[:8]} (SUCCESS, with its result) survived down and up"


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the copy and its logs")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below

    project = f"smartapp-check-{os.getpid()}"
    logs = REPO / ".run" / "compose-check" / project
    copy = Path(tempfile.mkdtemp(prefix="smartapp-compose-check-"))
    stack: Stack | None = None
    say(f"compose check: project {project}, copy {copy}")
    try:
        with step("prerequisites") as out:
            out["detail"] = ensure_prerequisites()
        with step("fresh copy of the repository") as out:
            out["detail"] = make_copy(copy)
        with step("make env in the copy") as out:
            out["detail"] = write_env(copy)
        logs.mkdir(parents=True, exist_ok=True)
        stack = Stack(copy, project, logs)
        say(f"  gateway on {stack.gateway}, logs in {logs}")
        with step("docker compose build") as out:
            (logs / "build.log").write_text(stack.compose("build", timeout=1800))
            built = json.loads(stack.compose("config", "--format", "json"))["services"]
            images = sorted({s["image"] for s in built.values() if "build" in s})
            out["detail"] = f"{len(images)} images built once each: {', '.join(images)}"
        with step("published ports are the check's own") as out:
            out["detail"] = check_ports(stack)
        with step("docker compose up --wait") as out:
            stack.compose("up", "-d", "--wait", "--wait-timeout", "300")
            out["detail"] = f"{len(stack.compose('ps', '-q').split())} containers healthy"
        with step("token made the README's way (make -s token)") as out:
            token = readme_token(copy)
            out["detail"] = "signed with the copy's .env JWT_SECRET"
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=stack.gateway, headers=headers, timeout=30) as client:
            with step("flow: background task and its status") as out:
                task_id, out["detail"] = flow_background_task(client)
            checks: list[tuple[str, Callable[[], str]]] = [
                ("flow: long-running task with progress", lambda: flow_long_running(client)),
                ("flow: cache put, get, delete", lambda: flow_cache(client)),
                ("flow: notification to a webhook device", lambda: flow_notification(client, stack)),
                ("flow: scraping, summarised by an OpenAI-compatible model", lambda: flow_scrape(client)),
                ("beat's entries reach their queues", lambda: check_beat(stack)),
                ("scale task-worker to 2", lambda: check_scale(client, stack)),
                # Last: it takes the stack down and up, and finds the first flow's task again.
                ("restart (down, up --wait) keeps data", lambda: check_restart(client, stack, task_id)),
            ]
            for name, check in checks:
                with step(name) as out:
                    out["detail"] = check()
    except Exception as exc:
        detail = str(exc) if isinstance(exc, CheckFailed) else traceback.format_exc()
        say(f"compose check FAILED: {detail}")
        if stack is not None:
            stack.save_logs()
            say(f"  container logs: {logs / 'compose.log'}")
        return 1
    finally:
        if stack is not None:
            with step("docker compose down -v"):
                stack.compose("down", "-v", "--remove-orphans", timeout=300)
        if not args.keep:
            shutil.rmtree(copy, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(logs, ignore_errors=True)  # kept only when a step failed
    say(f"compose check passed in {time.monotonic() - T0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
