"""A real Prometheus (the Debian binary) scrapes the running local stack.

The `local_stack` fixture (tests/conftest.py) yields once the gateway, the three services and
the three workers are up on their standard ports on 127.0.0.1. The targets come from
deploy/prometheus/prometheus.local.yml itself, so this checks that file too.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "deploy" / "prometheus"
QUEUES = {"default", "scraping", "notifications"}
GATEWAY = "http://127.0.0.1:8000"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def submit_task() -> str:
    """One task through the gateway, so the task series have samples in every process."""
    from shared import BaseServiceSettings, mint_token

    token = mint_token(BaseServiceSettings(), "prometheus-live-test", ["tasks"], 300)
    req = urllib.request.Request(
        f"{GATEWAY}/smart_application/tasks/background-task/",
        data=json.dumps({"task_type": "data_processing", "data": {"input": "prometheus"}}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 202
            task_id: str = json.loads(resp.read())["task_id"]
            return task_id
    except urllib.error.HTTPError as err:
        pytest.fail(f"submitting a task: {err.code} {err.read()[:500]!r}")


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
