"""The SDK's models against the live services' `/openapi.json`: a drift fails here.

For each endpoint the SDK reads, the answer's schema (resolved from the path, whatever the
component is called) is compared with the model's own JSON Schema, recursively: the same
property names, the same types and nullability, and every value the server may put in an
enum known to the model. A field added on either side is a failure, so the SDK follows
the services as they change.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from clientkit import Platform
from pydantic import BaseModel

import smartapp
from smartapp import TaskRetry

P = "/smart_application/tasks"

# (model, service, method, path, status)
ENDPOINTS: list[tuple[type[BaseModel], str, str, str, str]] = [
    (smartapp.TaskAccepted, "task", "post", "/background-task/", "202"),
    (smartapp.TaskAccepted, "task", "post", "/long-running-task/", "202"),
    (smartapp.TaskAccepted, "scraping", "post", "/background-scraping/", "202"),
    (smartapp.TaskStatus, "task", "get", "/task-status/{task_id}", "200"),
    (smartapp.TaskProgress, "task", "get", "/task-progress/{task_id}", "200"),
    (smartapp.TaskList, "task", "get", "/tasks/", "200"),
    (smartapp.CancelAccepted, "task", "post", "/task-cancel/{task_id}", "202"),
    (smartapp.CacheEntry, "task", "get", "/cache/{key}", "200"),
    (smartapp.CacheEntry, "task", "put", "/cache/{key}", "200"),
    (smartapp.Device, "notifications", "post", "/devices/", "201"),
    (smartapp.DeviceList, "notifications", "get", "/devices/", "200"),
    (smartapp.VapidPublicKey, "notifications", "get", "/webpush/vapid-public-key", "200"),
    (smartapp.NotificationAccepted, "notifications", "post", "/send-notification/", "202"),
    (smartapp.BatchAccepted, "notifications", "post", "/batch-notifications/", "202"),
    (smartapp.NotificationStatus, "notifications", "get", "/notification-status/{notification_id}", "200"),
    (smartapp.BatchStatus, "notifications", "get", "/batch-status/{batch_id}", "200"),
    (smartapp.InboxPage, "notifications", "get", "/inbox/", "200"),
    (smartapp.ReadResult, "notifications", "post", "/inbox/{notification_id}/read", "200"),
    (smartapp.Schedule, "task", "post", "/schedules/", "201"),
    (smartapp.ScheduleList, "task", "get", "/schedules/", "200"),
    (smartapp.Schedule, "task", "get", "/schedules/{schedule_id}", "200"),
    (smartapp.Schedule, "task", "patch", "/schedules/{schedule_id}", "200"),
    (smartapp.CacheListing, "task", "get", "/cache/", "200"),
    (smartapp.CacheBatchResult, "task", "post", "/cache-batch/", "200"),
    (
        smartapp.NotificationCancelled,
        "notifications",
        "post",
        "/notification-cancel/{notification_id}",
        "202",
    ),
    (smartapp.Preferences, "notifications", "get", "/notification-preferences", "200"),
    (smartapp.Preferences, "notifications", "put", "/notification-preferences", "200"),
]


class Doc:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def resolve(self, schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            ref: str = schema["$ref"]
            name = ref.rsplit("/", 1)[1]
            schema = defs[name] if ref.startswith("#/$defs/") else self.doc["components"]["schemas"][name]
        return schema


def _alternatives(schema: dict[str, Any]) -> list[dict[str, Any]]:
    if "anyOf" in schema:
        return list(schema["anyOf"])
    if isinstance(schema.get("type"), list):
        return [{**schema, "type": t} for t in schema["type"]]
    return [schema]


def _kind(schema: dict[str, Any]) -> str:
    if "properties" in schema:
        return "object"
    if "enum" in schema or "const" in schema:
        return "enum:" + str(schema.get("type", ""))
    return str(schema.get("type", "any"))


def compare(
    model: dict[str, Any],
    server: dict[str, Any],
    where: str,
    mdoc: Doc,
    sdoc: Doc,
    mdefs: dict[str, Any],
) -> list[str]:
    model = mdoc.resolve(model, mdefs)
    server = sdoc.resolve(server, {})
    problems: list[str] = []
    m_alts = [mdoc.resolve(a, mdefs) for a in _alternatives(model)]
    s_alts = [sdoc.resolve(a, {}) for a in _alternatives(server)]
    m_null = any(a.get("type") == "null" for a in m_alts)
    s_null = any(a.get("type") == "null" for a in s_alts)
    if m_null != s_null:
        problems.append(f"{where}: nullable {m_null} in the SDK, {s_null} on the server")
    m_alts = [a for a in m_alts if a.get("type") != "null"]
    s_alts = [a for a in s_alts if a.get("type") != "null"]
    if not m_alts or not s_alts or (len(m_alts) == 1 and m_alts[0] == {}):
        if bool(m_alts) != bool(s_alts) and not (m_alts == [{}] or s_alts == [{}]):
            problems.append(f"{where}: {m_alts} in the SDK, {s_alts} on the server")
        return problems
    if len(m_alts) != 1 or len(s_alts) != 1:
        if sorted(map(_kind, m_alts)) != sorted(map(_kind, s_alts)):
            problems.append(f"{where}: types {list(map(_kind, m_alts))} vs {list(map(_kind, s_alts))}")
        return problems
    m, s = m_alts[0], s_alts[0]
    if _kind(m) != _kind(s) and s != {}:
        return [f"{where}: {_kind(m)} in the SDK, {_kind(s)} on the server"]
    if "properties" in s:
        m_props, s_props = m.get("properties", {}), s["properties"]
        if set(m_props) != set(s_props):
            missing, extra = sorted(set(s_props) - set(m_props)), sorted(set(m_props) - set(s_props))
            problems.append(f"{where}: fields missing in the SDK {missing}, unknown to the server {extra}")
        for name in sorted(set(m_props) & set(s_props)):
            problems += compare(m_props[name], s_props[name], f"{where}.{name}", mdoc, sdoc, mdefs)
        if set(s.get("required", [])) - set(m.get("required", [])):
            problems.append(f"{where}: required on the server but optional in the SDK: {s['required']}")
    elif "enum" in s or "const" in s:
        s_vals = set(s.get("enum", [s.get("const")]))
        m_vals = set(m.get("enum", [m.get("const")]))
        if not s_vals <= m_vals:
            problems.append(f"{where}: server values {sorted(s_vals - m_vals)} unknown to the SDK")
    elif s.get("type") == "array":
        problems += compare(m.get("items", {}), s.get("items", {}), f"{where}[]", mdoc, sdoc, mdefs)
    elif s.get("type") == "object" and isinstance(s.get("additionalProperties"), dict):
        problems += compare(
            m.get("additionalProperties", {}), s["additionalProperties"], f"{where}{{}}", mdoc, sdoc, mdefs
        )
    return problems


@pytest.fixture(scope="module")
def openapi(platform: Platform) -> dict[str, Doc]:
    docs = {}
    for name, base in platform.services.items():
        r = httpx.get(f"{base}/openapi.json", timeout=30)
        assert r.status_code == 200, r.text
        docs[name] = Doc(r.json())
    return docs


@pytest.mark.parametrize(
    ("model", "service", "method", "path", "status"),
    ENDPOINTS,
    ids=[f"{e[2].upper()} {e[3]}" for e in ENDPOINTS],
)
def test_model_matches_the_live_openapi_schema(
    openapi: dict[str, Doc], model: type[BaseModel], service: str, method: str, path: str, status: str
) -> None:
    doc = openapi[service]
    paths = doc.doc["paths"]
    operation = (paths.get(P + path) or paths[P + path + "/"])[method]  # canonical: with or without /
    server_schema = operation["responses"][status]["content"]["application/json"]["schema"]
    model_schema = model.model_json_schema(mode="serialization")
    mdoc = Doc({"components": {"schemas": model_schema.get("$defs", {})}})
    problems = compare(model_schema, server_schema, model.__name__, mdoc, doc, model_schema.get("$defs", {}))
    assert problems == []


def test_the_comparison_catches_a_missing_field_and_a_changed_type() -> None:
    class Drifted(BaseModel):
        task_id: int
        status: str

    server = {"properties": {"task_id": {"type": "string"}, "status": {"type": "string"}, "new": {}}}
    doc = Doc({"components": {"schemas": {}}})
    problems = compare(Drifted.model_json_schema(), server, "Drifted", doc, doc, {})
    assert any("fields missing in the SDK ['new']" in p for p in problems)
    assert any("Drifted.task_id: integer in the SDK, string on the server" in p for p in problems)


SUBMISSIONS = [
    ("task", "/background-task/", ["countdown", "priority", "callback_url"]),
    ("task", "/long-running-task/", ["countdown", "priority", "callback_url"]),
    ("scraping", "/background-scraping/", []),
]


@pytest.mark.parametrize(("service", "path", "own"), SUBMISSIONS, ids=[s[1] for s in SUBMISSIONS])
def test_submission_options_match_the_live_request_schema(
    openapi: dict[str, Doc], service: str, path: str, own: list[str]
) -> None:
    """What the SDK sends: each option by a name the body knows, and `retry` field for field.

    TaskRetry's fields are all optional (left out, the task type's default applies), so only
    nullability may differ from the server's RetryPolicy."""
    doc = openapi[service]
    paths = doc.doc["paths"]
    operation = (paths.get(P + path) or paths[P + path + "/"])["post"]
    body = doc.resolve(operation["requestBody"]["content"]["application/json"]["schema"], {})
    assert {"retry", "queue_timeout_seconds", "run_timeout_seconds", *own} <= set(body["properties"])
    retry = TaskRetry.model_json_schema()
    problems = compare(retry, body["properties"]["retry"], "TaskRetry", doc, doc, {})
    assert [p for p in problems if "nullable" not in p] == []
    assert set(retry["properties"]) == set(TaskRetry.model_fields)
