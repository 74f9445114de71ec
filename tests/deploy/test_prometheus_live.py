"""A real Prometheus (the Debian binary) scrapes the running local stack.

The `local_stack` fixture (tests/conftest.py) yields once the gateway, the three services and
the three workers are up on their standard ports on 127.0.0.1. The targets come from
deploy/prometheus/prometheus.local.yml itself, so this checks that file too.
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit import free_port

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "deploy" / "prometheus"
QUEUES = {"default", "scraping", "notifications"}
GATEWAY = "http://127.0.0.1:8000"


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # loopback only
        return json.loads(resp.read())


def expected_targets() -> set[tuple[str, str]]:
    config = yaml.safe_load((PROM / "prometheus.local.yml").read_text())
    out = set()
    for job in config["scrape_configs"]:
        for sc in job["static_configs"]:
            for target in sc["targets"]:
                assert target.startswith("127.0.0.1:"), f"local targets stay on loopback: {target}"
                out.add((job["job_name"], target))
    return out


@pytest.fixture
def prometheus(local_stack: object, tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus server is needed: apt-get install -y prometheus (Debian)")
    config = yaml.safe_load((PROM / "prometheus.local.yml").read_text())
    # Scrape every second so the test takes seconds; everything else is the file as shipped.
    config["global"].update({"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"})
    config["rule_files"] = [str(PROM / "alerts.yml")]
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited: {(tmp_path / 'prometheus.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("prometheus did not become ready in 30 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    body = get_json(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        ok, last = check()
        if ok:
            return last
        time.sleep(0.5)
    pytest.fail(f"{what} within {timeout:.0f} s; last seen: {last}")


def call(method: str, path: str, body: Any = None, user: str = "prometheus-live-test") -> Any:
    """One call through the gateway, as `user`; the answer's JSON (None when empty)."""
    from shared import BaseServiceSettings, mint_token

    token = mint_token(BaseServiceSettings(), user, ["tasks"], 300)
    req = urllib.request.Request(
        f"{GATEWAY}/smart_application/tasks{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert 200 <= resp.status < 300
            raw = resp.read()
            return json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        pytest.fail(f"{method} {path}: {err.code} {err.read()[:500]!r}")


def submit_task(data: dict[str, Any] | None = None) -> str:
    """One task through the gateway, so the task series have samples in every process."""
    body = {"task_type": "data_processing", "data": data or {"input": "prometheus"}}
    task_id: str = call("POST", "/background-task/", body)["task_id"]
    return task_id


def test_every_local_target_is_up(prometheus: str) -> None:
    expected = expected_targets()
    assert {job for job, _ in expected} == {
        "gateway",
        "task-service",
        "scraping-service",
        "notification-service",
        "task-worker",
        "scraping-worker",
        "notification-worker",
        "scheduler",
    }

    def check() -> tuple[bool, Any]:
        active = get_json(f"{prometheus}/api/v1/targets?state=active")["data"]["activeTargets"]
        seen = {
            (t["labels"]["job"], t["labels"]["instance"]): (t["health"], t.get("lastError")) for t in active
        }
        return set(seen) == expected and all(h == "up" for h, _ in seen.values()), seen

    wait_for(check, 30, "every target up")
    up = query(prometheus, "up")
    assert {(r["metric"]["job"], r["metric"]["instance"]) for r in up if r["value"][1] == "1"} == expected


def test_task_and_queue_series_exist(prometheus: str) -> None:
    submit_task()

    def queues() -> tuple[bool, Any]:
        found = {r["metric"].get("queue") for r in query(prometheus, "smartapp_queue_depth")}
        return found >= QUEUES, found

    wait_for(queues, 30, "smartapp_queue_depth for every queue")

    for expr in (
        'smartapp_tasks_submitted_total{queue="default"}',
        'smartapp_tasks_started_total{job="task-worker", queue="default"}',
        'smartapp_task_queue_wait_seconds_count{job="task-worker", queue="default"}',
        'smartapp_http_requests_total{job="gateway"}',
        'smartapp_http_request_duration_seconds_bucket{job="gateway"}',
    ):
        wait_for(lambda e=expr: (bool(query(prometheus, e)), e), 30, f"a series for {expr}")
    # Each worker reports the depth of its own queue (one broker, three readers).
    owners = {r["metric"]["queue"]: r["metric"]["job"] for r in query(prometheus, "smartapp_queue_depth")}
    assert owners == {
        "default": "task-worker",
        "scraping": "scraping-worker",
        "notifications": "notification-worker",
    }
    # The rules loaded and evaluate against the live series without errors.
    groups = get_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
    assert groups and all(rule["health"] != "err" for g in groups for rule in g["rules"]), groups


# --- every alert rule reads series the running platform produces ---------------------------

# What a healthy stack cannot be driven to produce without breaking it: the gateway answers
# no 5xx. For that rule the test widens the one matcher that selects the failure, so the
# rest (metric, job, labels, the ratio's shape) is still checked against live series.
WIDENED = {"SmartappGatewayErrorRatioHigh": ('status=~"5.."', 'status=~".+"')}
_SET_OPERATOR = re.compile(r"(and|or|unless)\b(\s+(?:on|ignoring)\s*\([^)]*\))?")
_THRESHOLD = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*(bool\s+)?[-+]?[0-9.]+(e[-+]?[0-9]+)?\s*$")


def operands(expr: str) -> list[str]:
    """The operands of an expression's top-level `and` / `or` / `unless`, each with its
    threshold comparison stripped: the series the rule compares."""
    parts, depth, quote, start, i = [], 0, "", 0, 0
    while i < len(expr):
        c = expr[i]
        if quote:
            quote = "" if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and (i == 0 or not (expr[i - 1].isalnum() or expr[i - 1] == "_")):
            m = _SET_OPERATOR.match(expr, i)
            if m:
                parts.append(expr[start:i])
                start = i = m.end()
                continue
        i += 1
    parts.append(expr[start:])
    return [_THRESHOLD.sub("", part).strip() for part in parts]


def test_operands_strip_thresholds_and_split_set_operators() -> None:
    expr = 'max by (queue) (a{x="and"}) > 0\n unless on (queue)\n sum by (queue) (rate(b[5m])) >= 5'
    assert operands(expr) == ['max by (queue) (a{x="and"})', "sum by (queue) (rate(b[5m]))"]
    assert operands("(x / y) > 0.1 or absent(up)") == ["(x / y)", "absent(up)"]


class _Receiver(http.server.BaseHTTPRequestHandler):
    """Webhook receiver: /ok answers 200, /refuse 400 (a final failure), /flaky 503 once."""

    answered: dict[str, int] = {}

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        name = self.path.strip("/")
        seen = self.answered.get(name, 0)
        self.answered[name] = seen + 1
        status = {"ok": 200, "refuse": 400}.get(name, 503 if seen == 0 else 200)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def drive_traffic(receiver: str) -> None:
    """A little of everything the rules read: tasks that succeed and fail, and webhook
    deliveries that are delivered, refused for good, and retried."""
    submit_task()
    failing = submit_task({"input": "x", "operations": ["no-such-operation"]})
    user = f"prometheus-live-{int(time.time())}"
    for name in ("ok", "refuse", "flaky"):
        call("POST", "/devices/", {"channel": "webhook", "url": f"{receiver}/{name}"}, user=user)
    call("POST", "/send-notification/", {"user_id": user, "title": "alert rules"}, user=user)

    def failed() -> tuple[bool, Any]:
        status = call("GET", f"/task-status/{failing}")["status"]
        return status == "FAILURE", status

    wait_for(failed, 60, "the failing task to fail")


def test_every_alert_rule_reads_live_series(prometheus: str, receiver: str) -> None:
    rules = [
        rule
        for group in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    ]
    names = {rule["alert"] for rule in rules}
    assert set(WIDENED) <= names, "a widened rule is gone: drop it from WIDENED"
    drive_traffic(receiver)
    checked = []
    for rule in rules:
        expr = rule["expr"]
        if rule["alert"] in WIDENED:
            narrow, wide = WIDENED[rule["alert"]]
            assert narrow in expr, rule["alert"]
            expr = expr.replace(narrow, wide)
        # `absent(...)` is meant to be empty while the series exists.
        parts = [p for p in operands(expr) if not p.startswith("absent(")]
        assert parts, rule["alert"]
        for part in parts:
            # rate() needs two samples of a new series; the rules loaded with the stack.
            wait_for(
                lambda q=part: (bool(query(prometheus, q)), q),
                60,
                f"{rule['alert']}: a series for {part!r}",
            )
            checked.append((rule["alert"], part))
    assert {alert for alert, _ in checked} == names
