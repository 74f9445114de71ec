"""Kubernetes manifests: strict offline schema validation of the base and of every overlay as
kustomize renders it, and the structure the platform needs (roles, probes, scaling, policy)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
KEDA_SCHEMA = Path(__file__).with_name("keda-v1alpha1.schema.json")
# Oldest and newest Kubernetes minor the manifests must be valid for.
K8S_VERSIONS = ["1.29", "1.37"]

APIS = {
    "gateway": ("gateway", 8000),
    "task-service": ("task_service", 8001),
    "scraping-service": ("scraping_service", 8002),
    "notification-service": ("notification_service", 8003),
}
GATEWAY_METRICS_PORT = 9100
WORKERS = {
    "task-worker": ("task_service.worker", "default", "task", 9101, "task-service"),
    "scraping-worker": ("scraping_service.worker", "scraping", "scraping", 9102, "scraping-service"),
    "notification-worker": (
        "notification_service.worker",
        "notifications",
        "notifications",
        9103,
        "notification-service",
    ),
}
RABBITMQ_TRIGGER_KEYS = {
    "host",
    "hostFromEnv",
    "protocol",
    "queueName",
    "mode",
    "value",
    "activationValue",
    "vhostName",
    "useRegex",
    "excludeUnacknowledged",
    "pageSize",
    "operation",
    "timeout",
    "unsafeSsl",
}

Doc = dict[str, Any]


def load_docs(text: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(text) if d]


def base_docs() -> list[Doc]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    docs: list[Doc] = []
    for resource in kustomization["resources"]:
        docs.extend(load_docs((BASE / resource).read_text()))
    return docs


def kustomize_build(path: Path) -> list[Doc]:
    if shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", str(path)]
    elif shutil.which("kustomize"):
        cmd = ["kustomize", "build", str(path)]
    else:
        pytest.fail("kubectl (with kustomize) or kustomize is needed to render the overlays")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return load_docs(proc.stdout)


def by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def validate_strict(docs: list[Doc], version: str) -> list[str]:
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail(
            "the kubernetes-validate package is needed (dev dependency): uv add --dev kubernetes-validate"
        )
    import jsonschema

    keda = json.loads(KEDA_SCHEMA.read_text())
    errors = []
    for doc in docs:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc.get("apiVersion", "").startswith("keda.sh/"):
            schema = {**keda, "$ref": f"#/$defs/{doc['kind']}"}
            if doc["kind"] not in keda["$defs"]:
                errors.append(f"{where}: no schema for this KEDA kind")
                continue
            for err in jsonschema.Draft202012Validator(schema).iter_errors(doc):
                errors.append(f"{where}: {'.'.join(map(str, err.path))}: {err.message}")
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            errors.append(f"{where} ({version}): {'.'.join(map(str, err.path))}: {err.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{where}: kind unknown to Kubernetes {version}")
    return errors


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    return base_docs()


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_base_validates_strictly(docs: list[Doc], version: str) -> None:
    assert not validate_strict(docs, version), "\n".join(validate_strict(docs, version))


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_overlay_renders_and_validates_strictly(overlay: str, version: str) -> None:
    rendered = kustomize_build(K8S / "overlays" / overlay)
    errors = validate_strict(rendered, version)
    assert not errors, "\n".join(errors)
    namespaces = {d["metadata"].get("namespace") for d in rendered if d["kind"] != "Namespace"}
    assert len(namespaces) == 1 and None not in namespaces, f"every object in one namespace: {namespaces}"


def test_secret_template_validates() -> None:
    template = load_docs((BASE / "secret.template.yaml").read_text())
    assert {d["metadata"]["name"] for d in template} == {"smartapp-secrets", "smartapp-keda-rabbitmq"}
    assert not validate_strict(template, K8S_VERSIONS[-1])
    # A template, not a resource: no placeholder secret is ever applied with the base.
    assert (
        "secret.template.yaml" not in yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    )


def test_strict_validation_catches_a_typo(docs: list[Doc]) -> None:
    broken = json.loads(json.dumps(by_kind(docs, "Deployment")["gateway"]))
    broken["spec"]["replcas"] = 2
    assert validate_strict([broken], K8S_VERSIONS[-1])
    scaled = json.loads(json.dumps(by_kind(docs, "ScaledObject")["task-worker"]))
    scaled["spec"]["maxReplicas"] = 3
    assert validate_strict([scaled], K8S_VERSIONS[-1])


# --- roles ----------------------------------------------------------------------------------


def container(deploy: Doc) -> Doc:
    (ctr,) = deploy["spec"]["template"]["spec"]["containers"]
    return ctr  # type: ignore[no-any-return]


def test_a_deployment_and_service_per_api(docs: list[Doc]) -> None:
    deployments = by_kind(docs, "Deployment")
    services = by_kind(docs, "Service")
    for name, (package, port) in APIS.items():
        ctr = container(deployments[name])
        assert ctr["command"] == ["python", "-m", package]
        assert ctr["image"] == f"smartapp/{name}:latest"
        extra = [GATEWAY_METRICS_PORT] if name == "gateway" else []
        assert [p["containerPort"] for p in ctr["ports"]] == [port, *extra]
        svc = services[name]
        assert svc["spec"]["selector"] == {"app.kubernetes.io/name": name}
        assert svc["spec"]["type"] == "ClusterIP"
        assert [p["port"] for p in svc["spec"]["ports"]] == [port]
    assert set(services) == set(APIS), "workers and beat get no Service"


def test_probes_on_health_and_ready(docs: list[Doc]) -> None:
    deployments = by_kind(docs, "Deployment")
    for name in APIS:
        ctr = container(deployments[name])
        assert ctr["livenessProbe"]["httpGet"]["path"] == "/health"
        assert ctr["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert ctr["startupProbe"]["httpGet"]["path"] == "/health"
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert ctr[probe]["httpGet"]["port"] == "http"


def test_a_deployment_per_worker(docs: list[Doc]) -> None:
    deployments = by_kind(docs, "Deployment")
    for name, (module, queue, node, port, image) in WORKERS.items():
        ctr = container(deployments[name])
        cmd = ctr["command"]
        assert cmd[:8] == ["celery", "-A", module, "worker", "-Q", queue, "-n", f"{node}@%h"]
        assert any(c.startswith("--concurrency=") for c in cmd), "Celery would use the node's CPU count"
        assert ctr["image"] == f"smartapp/{image}:latest"
        assert {"name": "WORKER_METRICS_PORT", "value": str(port)} in ctr["env"]
        assert ctr["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
        assert [p["containerPort"] for p in ctr["ports"]] == [port]
        spec = deployments[name]["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] >= 60, "room for a warm shutdown"


def test_beat_is_one_replica_recreated(docs: list[Doc]) -> None:
    beat = by_kind(docs, "Deployment")["beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert container(beat)["command"][:4] == ["celery", "-A", "task_service.beat", "beat"]
    scaled = {
        d["spec"]["scaleTargetRef"]["name"]
        for d in docs
        if d["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
    }
    assert "beat" not in scaled
    assert "beat" not in by_kind(docs, "PodDisruptionBudget")


def test_every_deployment_is_known(docs: list[Doc]) -> None:
    assert set(by_kind(docs, "Deployment")) == set(APIS) | set(WORKERS) | {"beat", "scheduler"}


def test_requests_limits_and_security(docs: list[Doc]) -> None:
    for name, deploy in by_kind(docs, "Deployment").items():
        pod = deploy["spec"]["template"]["spec"]
        ctr = container(deploy)
        res = ctr["resources"]
        assert {"cpu", "memory"} <= set(res["requests"]) and {"cpu", "memory"} <= set(res["limits"]), name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == 10001, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        sc = ctr["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, name
        assert sc["capabilities"] == {"drop": ["ALL"]}, name
        assert {"name": "tmp", "mountPath": "/tmp"} in ctr["volumeMounts"], name
        assert {"configMapRef": {"name": "smartapp-config"}} in ctr["envFrom"], name
        assert {"secretRef": {"name": "smartapp-secrets"}} in ctr["envFrom"], name


# --- scaling --------------------------------------------------------------------------------


def test_hpa_for_each_api_only(docs: list[Doc]) -> None:
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == set(APIS)
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_keda_scales_each_worker_on_its_queue_through_the_management_api(docs: list[Doc]) -> None:
    scaled = by_kind(docs, "ScaledObject")
    auths = by_kind(docs, "TriggerAuthentication")
    assert set(scaled) == set(WORKERS)
    for name, (_, queue, _, _, _) in WORKERS.items():
        spec = scaled[name]["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        assert spec["minReplicaCount"] >= 1 and spec["maxReplicaCount"] > spec["minReplicaCount"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "rabbitmq"
        meta = trigger["metadata"]
        assert set(meta) <= RABBITMQ_TRIGGER_KEYS, set(meta) - RABBITMQ_TRIGGER_KEYS
        # Over AMQP only ready messages count; Celery's prefetched, unacked tasks would be missed.
        assert meta["protocol"] == "http"
        assert meta["queueName"] == queue
        assert meta["mode"] == "QueueLength" and int(meta["value"]) > 0
        assert "host" not in meta, "credentials come from the TriggerAuthentication, not the manifest"
        auth = auths[trigger["authenticationRef"]["name"]]
        assert {"parameter": "host", "name": "smartapp-keda-rabbitmq", "key": "host"} in auth["spec"][
            "secretTargetRef"
        ]
    text = (BASE / "keda.yaml").read_text()
    assert "unacknowledged" in text and "ready" in text, "keda.yaml explains why not AMQP"


def test_pod_disruption_budgets(docs: list[Doc]) -> None:
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert set(pdbs) == set(APIS) | set(WORKERS) | {"scheduler"}
    for name, pdb in pdbs.items():
        assert pdb["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/name": name}}


# --- monitoring -----------------------------------------------------------------------------


def test_prometheus_scrape_annotations(docs: list[Doc]) -> None:
    for name, deploy in by_kind(docs, "Deployment").items():
        ann = deploy["spec"]["template"]["metadata"].get("annotations", {})
        if name == "beat":
            assert ann.get("prometheus.io/scrape") != "true", "beat serves no metrics"
            continue
        assert ann["prometheus.io/scrape"] == "true", name
        assert ann["prometheus.io/path"] == "/metrics", name
        ports = {p["name"]: p["containerPort"] for p in container(deploy)["ports"]}
        scraped = ports.get("metrics", ports.get("http"))
        assert int(ann["prometheus.io/port"]) == scraped, name
    gateway = by_kind(docs, "Deployment")["gateway"]
    assert gateway["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(
        GATEWAY_METRICS_PORT
    )


def test_gateway_metrics_port_admits_prometheus_only(docs: list[Doc]) -> None:
    policy = by_kind(docs, "NetworkPolicy")["gateway-ingress"]
    prometheus_peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    for rule in policy["spec"]["ingress"]:
        ports = {p["port"] for p in rule["ports"]}
        if GATEWAY_METRICS_PORT in ports:
            assert rule.get("from") == [prometheus_peer], rule
        else:
            assert ports == {8000}, rule
    service = by_kind(docs, "Service")["gateway"]
    assert [p["port"] for p in service["spec"]["ports"]] == [8000], "the Service carries no metrics"


def test_job_label_matches_the_alert_rules(docs: list[Doc]) -> None:
    # The in-cluster scrape config sets job from app.kubernetes.io/name; the rules expect these.
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.k8s.yml").read_text())
    relabels = config["scrape_configs"][0]["relabel_configs"]
    assert any(
        r.get("target_label") == "job"
        and r.get("source_labels") == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
        for r in relabels
    )
    names = {
        d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
        for d in by_kind(docs, "Deployment").values()
    }
    assert names == set(APIS) | set(WORKERS) | {"beat", "scheduler"}


# --- network policy -------------------------------------------------------------------------


def test_default_deny_ingress(docs: list[Doc]) -> None:
    deny = by_kind(docs, "NetworkPolicy")["default-deny-ingress"]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}


def _selected(policy: Doc, labels: dict[str, str]) -> bool:
    sel = policy["spec"]["podSelector"]
    if any(labels.get(k) != v for k, v in sel.get("matchLabels", {}).items()):
        return False
    for expr in sel.get("matchExpressions", []):
        value = labels.get(expr["key"])
        if expr["operator"] == "In" and value not in expr["values"]:
            return False
    return True


def _pod_labels(deploy: Doc) -> dict[str, str]:
    return dict(deploy["spec"]["template"]["metadata"]["labels"])


def test_services_accept_only_the_gateway_prometheus_and_task_service_on_internal_calls(
    docs: list[Doc],
) -> None:
    policies = [p for p in by_kind(docs, "NetworkPolicy").values() if "Ingress" in p["spec"]["policyTypes"]]
    deployments = by_kind(docs, "Deployment")
    prometheus_peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    internal_peer = {
        "podSelector": {
            "matchExpressions": [
                {"key": "app.kubernetes.io/name", "operator": "In", "values": ["task-service", "scheduler"]}
            ]
        }
    }
    for name in APIS:
        if name == "gateway":
            continue
        rules = [
            r
            for p in policies
            if _selected(p, _pod_labels(deployments[name]))
            for r in p["spec"].get("ingress", [])
        ]
        assert rules, name
        for rule in rules:
            assert rule.get("from"), f"{name}: an ingress rule without `from` admits everyone"
            for peer in rule["from"]:
                allowed = [
                    {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}},
                    prometheus_peer,
                ]
                if name in ("scraping-service", "notification-service"):
                    # Schedules: task-service and the scheduler call their internal endpoints.
                    allowed.append(internal_peer)
                assert peer in allowed, (name, peer)
    for name in WORKERS:
        rules = [
            r
            for p in policies
            if _selected(p, _pod_labels(deployments[name]))
            for r in p["spec"].get("ingress", [])
        ]
        assert rules, name
        for rule in rules:
            assert rule["from"] == [prometheus_peer], name
            assert {p["port"] for p in rule["ports"]} >= {WORKERS[name][3]}
    beat_rules = [
        r
        for p in policies
        if _selected(p, _pod_labels(deployments["beat"]))
        for r in p["spec"].get("ingress", [])
    ]
    assert beat_rules == [], "beat accepts no connection"


def test_egress_keeps_the_metadata_address_out(docs: list[Doc]) -> None:
    policy = by_kind(docs, "NetworkPolicy")["egress-no-metadata"]
    blocks = [
        peer["ipBlock"] for rule in policy["spec"]["egress"] for peer in rule["to"] if "ipBlock" in peer
    ]
    assert {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]} in blocks
    for deploy in by_kind(docs, "Deployment").values():
        assert _selected(policy, _pod_labels(deploy))


# --- config ---------------------------------------------------------------------------------


def test_configmap_names_only_what_compose_sets_too(docs: list[Doc]) -> None:
    data = by_kind(docs, "ConfigMap")["smartapp-config"]["data"]
    assert data["ENVIRONMENT"] == "production"
    assert data["HOST"] == "0.0.0.0"
    for name, (_, port) in APIS.items():
        if name != "gateway":
            assert data[f"{name.replace('-', '_').upper()}_URL"] == f"http://{name}:{port}"
    assert not {"JWT_SECRET", "SECRET_KEY", "RABBITMQ_PASSWORD", "OPENAI_API_KEY"} & set(data), (
        "secrets go in the Secret"
    )


def test_dev_overlay_is_development(tmp_path: Path) -> None:
    rendered = kustomize_build(K8S / "overlays" / "dev")
    config = by_kind(rendered, "ConfigMap")["smartapp-config"]["data"]
    assert config["ENVIRONMENT"] == "development"
    assert "smartapp-secrets" in by_kind(rendered, "Secret")
    assert {"redis", "redis-cache", "rabbitmq"} <= set(by_kind(rendered, "Service"))
    deployments = by_kind(rendered, "Deployment")
    state, cache = container(deployments["redis"])["args"], container(deployments["redis-cache"])["args"]
    assert state[state.index("--maxmemory-policy") + 1] == "noeviction"
    assert cache[cache.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert config["CACHE_REDIS_URL"] == "redis://redis-cache:6379/0"


def test_production_overlay_pins_images_and_restricts_pods() -> None:
    rendered = kustomize_build(K8S / "overlays" / "production")
    for deploy in by_kind(rendered, "Deployment").values():
        image = container(deploy)["image"]
        assert not image.endswith(":latest"), image
    (ns,) = by_kind(rendered, "Namespace").values()
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert not by_kind(rendered, "Secret"), "production secrets are created out of band"
