"""GET /task-types/: every registered type with its description and the JSON Schema of its data."""

from __future__ import annotations

import jsonschema
import pytest

from task_service.kinds import REGISTRY

P = "/smart_application/tasks"


async def test_task_types_list_each_type_with_a_schema_that_matches_validation(task_client, auth) -> None:
    r = await task_client.get(f"{P}/task-types/", headers=auth())
    assert r.status_code == 200, r.text
    types = {t["name"]: t for t in r.json()["task_types"]}
    assert set(types) == set(REGISTRY)
    assert list(types) == sorted(types)
    for name, kind in REGISTRY.items():
        assert types[name]["description"] == kind.description
        # The published schema is a valid JSON Schema and agrees with what submission validates.
        jsonschema.Draft202012Validator.check_schema(types[name]["input_schema"])
    text = types["text_analysis"]["input_schema"]
    assert text["required"] == ["text"]
    assert text["properties"]["top"]["default"] == 10 and text["additionalProperties"] is False
    validator = jsonschema.Draft202012Validator(text)
    assert validator.is_valid({"text": "hello", "top": 3})
    assert not validator.is_valid({"top": 3})
    assert not validator.is_valid({"text": "hello", "colour": "red"})
    assert set(types["aggregate"]["input_schema"]["required"]) == {"records", "group_by"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
async def test_task_types_need_a_token(task_client, headers) -> None:
    r = await task_client.get(f"{P}/task-types/", headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
