"""Prometheus configs and alert rules checked by promtool (with the rules' unit tests), and the
Grafana provisioning and dashboard, whose queries must parse and name metrics the code has."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "deploy" / "prometheus"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "smartapp.json"
CODE_DIRS = [
    REPO / "shared" / "shared",
    REPO / "gateway" / "gateway",
    REPO / "task-service" / "task_service",
    REPO / "scraping-service" / "scraping_service",
    REPO / "notification-service" / "notification_service",
]
JOBS = {
    "gateway": 9100,  # GATEWAY_METRICS_PORT: the public 8000 serves no /metrics
    "task-service": 8001,
    "scraping-service": 8002,
    "notification-service": 8003,
    "task-worker": 9101,
    "scraping-worker": 9102,
    "notification-worker": 9103,
    "scheduler": 9104,  # SCHEDULER_METRICS_PORT
}
# The metric names the platform promises (the issue's contract), without the prefix.
CONTRACT_METRICS = {
    "http_requests_total",
    "http_request_duration_seconds",
    "tasks_submitted_total",
    "tasks_started_total",
    "tasks_succeeded_total",
    "tasks_failed_total",
    "tasks_retried_total",
    "task_duration_seconds",
    "task_queue_wait_seconds",
    "queue_depth",
    "notifications_deliveries_total",
    "scrape_pages_total",
    "openai_tokens_total",
}
_METRIC = re.compile(r"\bsmartapp_[a-z0-9_]+")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is needed: apt-get install -y prometheus (Debian) puts it on PATH")
    return path


def run_promtool(*args: str, cwd: Path = PROM) -> str:
    proc = subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def base_name(metric: str) -> str:
    name = metric.removeprefix("smartapp_")
    for suffix in _HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def code_metrics() -> set[str]:
    """Metric names defined in the code: literal `smartapp_x` or f"{NS}_x" (NS = "smartapp")."""
    names: set[str] = set()
    for directory in CODE_DIRS:
        for file in directory.rglob("*.py"):
            text = file.read_text()
            names |= {m.removeprefix("smartapp_") for m in re.findall(r'"smartapp_([a-z0-9_]+)"', text)}
            names |= {m.removeprefix("smartapp_") for m in _METRIC.findall(text)}
            names |= set(re.findall(r'f"\{NS\}_([a-z0-9_]+)"', text))
    return names


def rule_exprs() -> list[tuple[str, str]]:
    rules = load_yaml(PROM / "alerts.yml")
    return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in dash["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels(dashboard()) for t in p.get("targets", [])]


def grafana_to_promql(expr: str) -> str:
    """Grafana variables replaced by what they stand for, so promtool can parse the query."""
    return expr.replace("$__rate_interval", "1m").replace("$job", ".+").replace("$queue", ".+")


# --- promtool ------------------------------------------------------------------------------


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.local.yml"])
def test_config_checks(config: str) -> None:
    out = run_promtool("check", "config", config)
    assert "SUCCESS" in out


def test_kubernetes_config_checks(tmp_path: Path) -> None:
    # Debian's promtool is built without Kubernetes discovery: check everything else (relabel
    # rules, rule files) with the discovery swapped for a static target, and the discovery by hand.
    config = load_yaml(PROM / "prometheus.k8s.yml")
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["smartapp"]}}]
    job.pop("kubernetes_sd_configs")
    job["static_configs"] = [{"targets": ["127.0.0.1:8000"]}]
    config["rule_files"] = [str(PROM / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    run_promtool("check", "config", str(tmp_path / "prometheus.yml"), cwd=tmp_path)


def test_rules_check() -> None:
    out = run_promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in out


def test_rules_unit_tests() -> None:
    run_promtool("test", "rules", "alerts.test.yml")


def test_every_alert_is_unit_tested() -> None:
    tests = load_yaml(PROM / "alerts.test.yml")
    tested = {case["alertname"] for t in tests["tests"] for case in t.get("alert_rule_test", [])}
    fires = {
        case["alertname"]
        for t in tests["tests"]
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {name for name, _ in rule_exprs()}
    assert alerts <= tested, alerts - tested
    assert alerts <= fires, f"never shown to fire: {alerts - fires}"


def test_alerts_cover_the_issue() -> None:
    alerts = {name for name, _ in rule_exprs()}
    wanted = {
        "SmartappQueueBacklog",
        "SmartappQueueWaitHigh",
        "SmartappTaskFailureRatioHigh",
        "SmartappWorkerDown",
        "SmartappGatewayLatencyHigh",
        "SmartappNotificationDeliveriesFailing",
    }
    assert wanted <= alerts
    latency = dict(rule_exprs())["SmartappGatewayLatencyHigh"]
    assert "histogram_quantile(0.99" in latency


def test_alerts_have_severity_and_summary() -> None:
    rules = load_yaml(PROM / "alerts.yml")
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
            assert rule.get("for"), f"{rule['alert']} fires on a single bad scrape"


# --- scrape targets ------------------------------------------------------------------------


def test_local_config_scrapes_the_make_run_stack() -> None:
    config = load_yaml(PROM / "prometheus.local.yml")
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets == {job: [f"127.0.0.1:{port}"] for job, port in JOBS.items()}
    assert config["rule_files"] == ["alerts.yml"]


def test_compose_config_scrapes_every_replica() -> None:
    config = load_yaml(PROM / "prometheus.yml")
    compose = load_yaml(REPO / "docker-compose.yml")["services"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"] if j["job_name"] != "prometheus"}
    assert set(jobs) == set(JOBS)
    for name, job in jobs.items():
        (sd,) = job["dns_sd_configs"]
        assert sd["names"] == [name] and sd["type"] == "A" and sd["port"] == JOBS[name]
        assert name in compose and str(JOBS[name]) in [str(p) for p in compose[name]["expose"]]
    assert config["rule_files"] == ["alerts.yml"]


# --- metric names --------------------------------------------------------------------------


def test_alerts_and_dashboard_use_contract_metrics() -> None:
    used = {base_name(m) for _, e in rule_exprs() + dashboard_exprs() for m in _METRIC.findall(e)}
    # Names the shared library adds beyond the contract.
    extra = {
        "tasks_revoked_total",
        "queue_consumers",
        "broker_up",
        # API.md "Schedules": the scheduler's runs, missed ticks, recovered runs and overdue schedules.
        "schedule_runs_total",
        "schedule_runs_late_total",
        "schedule_ticks_skipped_total",
        "schedule_runs_recovered_total",
        "schedules_overdue",
        "tasks_expired_total",
        "tasks_run_timeout_total",
        "tasks_replayed_total",
    }
    assert used <= CONTRACT_METRICS | extra, used - CONTRACT_METRICS - extra


def test_alerts_and_dashboard_use_metrics_the_code_defines() -> None:
    defined = code_metrics()
    used = {base_name(m) for _, e in rule_exprs() + dashboard_exprs() for m in _METRIC.findall(e)}
    missing = used - defined
    assert not missing, f"queried but defined nowhere in the code: {sorted(missing)}"


# --- grafana -------------------------------------------------------------------------------


def test_grafana_datasource_and_provider() -> None:
    ds = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "smartapp.yml")
    (prov,) = provider["providers"]
    compose = load_yaml(REPO / "docker-compose.yml")["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["volumes"] if v.startswith("./")}
    assert (REPO / mounts[prov["options"]["path"]] / "smartapp.json").is_file()
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"


def test_dashboard_parses_and_uses_the_provisioned_datasource() -> None:
    dash = dashboard()
    uid = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]["uid"]
    assert dash["uid"] and dash["title"]
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in panels(dash):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid and target["expr"], panel["title"]


def test_dashboard_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in panels(dashboard()):
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    # promtool parses PromQL when it checks rules: each query becomes a recording rule.
    rules = [
        {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)}
        for i, (_, expr) in enumerate(dashboard_exprs())
    ]
    (tmp_path / "dashboard-rules.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    run_promtool("check", "rules", str(tmp_path / "dashboard-rules.yml"), cwd=tmp_path)


def test_dashboard_shows_what_the_issue_asks() -> None:
    all_exprs = [expr for _, expr in dashboard_exprs()]
    exprs = " ".join(all_exprs)
    assert "rate(smartapp_http_requests_total" in exprs  # request rate
    latency = [e for t, e in dashboard_exprs() if "latency" in t.lower() and "route" in t.lower()]
    for q in ("0.5", "0.95", "0.99"):
        assert any(f"histogram_quantile({q}" in e and "route" in e for e in latency), q
    for metric in (
        "tasks_started_total",
        "tasks_succeeded_total",
        "tasks_failed_total",
        "tasks_retried_total",
    ):
        assert any(f"smartapp_{metric}" in e and "by (queue)" in e for e in all_exprs), metric
    for metric, label in (
        ("queue_depth", "queue"),
        ("notifications_deliveries_total", "outcome"),
        ("scrape_pages_total", "outcome"),
        ("openai_tokens_total", "model"),
    ):
        assert any(f"smartapp_{metric}" in e and label in e for e in all_exprs), metric
