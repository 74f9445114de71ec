from __future__ import annotations

import itertools
from typing import Any

import pytest

from scraping_service.merge import (
    SchemaInvalidError,
    check_schema,
    from_strict,
    merge_all,
    merge_values,
    strict_schema,
    validate,
)

PRODUCT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "price": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "maker": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "country": {"type": "string"}},
            "required": ["name"],
        },
        "kind": {"enum": ["tool", "toy"]},
    },
    "required": ["name"],
}


def test_strict_twin_makes_every_property_required_and_closes_objects() -> None:
    strict, wrapped = strict_schema(PRODUCT)
    assert not wrapped
    assert strict["additionalProperties"] is False
    assert strict["required"] == ["name", "price", "tags", "maker", "kind"]
    assert strict["properties"]["name"] == {"type": "string"}  # required stays as it was
    assert strict["properties"]["price"]["type"] == ["number", "null"]
    maker = strict["properties"]["maker"]
    assert maker["type"] == ["object", "null"]
    assert maker["additionalProperties"] is False and maker["required"] == ["name", "country"]
    assert maker["properties"]["country"]["type"] == ["string", "null"]
    assert strict["properties"]["kind"] == {"anyOf": [{"enum": ["tool", "toy"]}, {"type": "null"}]}
    check_schema(strict)
    assert PRODUCT["properties"]["price"] == {"type": "number"}  # the input is not modified


def test_non_object_roots_are_wrapped_and_unwrapped() -> None:
    schema = {"type": "array", "items": {"type": "string"}}
    strict, wrapped = strict_schema(schema)
    assert wrapped and strict["required"] == ["value"]
    assert from_strict({"value": ["a", "b"]}, schema, wrapped) == ["a", "b"]


def test_defs_and_refs_survive() -> None:
    schema = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/item"}}},
        "$defs": {"item": {"type": "object", "properties": {"sku": {"type": "string"}}}},
    }
    strict, _ = strict_schema(schema)
    assert strict["$defs"]["item"]["additionalProperties"] is False
    answer = {"items": [{"sku": None}, {"sku": "A1"}]}
    assert from_strict(answer, schema, False) == {"items": [{}, {"sku": "A1"}]}


def test_enum_values_that_look_like_schemas_are_untouched() -> None:
    schema = {"type": "object", "properties": {"v": {"enum": [{"type": "object"}]}}}
    strict, _ = strict_schema(schema)
    assert strict["properties"]["v"]["anyOf"][0] == {"enum": [{"type": "object"}]}


def test_from_strict_drops_nulls_of_optional_properties_only() -> None:
    answer = {
        "name": "drill",
        "price": None,
        "tags": None,
        "maker": {"name": "ACME", "country": None},
        "kind": None,
    }
    assert from_strict(answer, PRODUCT, False) == {"name": "drill", "maker": {"name": "ACME"}}
    assert validate(from_strict(answer, PRODUCT, False), PRODUCT) is None


def test_merge_fills_nulls_and_dedupes_arrays_stably() -> None:
    a = {"name": None, "tags": ["b", "a"], "maker": {"name": "ACME"}}
    b = {"name": "drill", "tags": ["a", "c"], "maker": {"name": "Other", "country": "NL"}, "price": 5}
    c = {"name": "hammer", "tags": ["c", "d", "b"], "price": 7}
    merged = merge_all([a, b, c])
    assert merged == {
        "name": "drill",
        "tags": ["b", "a", "c", "d"],
        "maker": {"name": "ACME", "country": "NL"},
        "price": 5,
    }


def test_merge_dedupes_objects_regardless_of_key_order() -> None:
    merged = merge_values([{"a": 1, "b": 2}], [{"b": 2, "a": 1}, {"a": 3}])
    assert merged == [{"a": 1, "b": 2}, {"a": 3}]


def test_empty_string_is_filled_but_not_kept_over_a_value() -> None:
    assert merge_values({"x": ""}, {"x": "y"}) == {"x": "y"}
    assert merge_values({"x": "y"}, {"x": ""}) == {"x": "y"}
    assert merge_all([]) is None
    assert merge_all([None, {"a": 1}]) == {"a": 1}


def test_merge_is_deterministic_and_order_sensitive_only_by_position() -> None:
    parts = [{"l": [1, 2], "s": None}, {"l": [2, 3], "s": "first"}, {"l": [3, 4], "s": "second"}]
    results = {repr(merge_all(parts)) for _ in range(5)}
    assert len(results) == 1
    assert merge_all(parts) == {"l": [1, 2, 3, 4], "s": "first"}
    # Every order gives a result that contains every distinct array element exactly once.
    for perm in itertools.permutations(parts):
        assert sorted(merge_all(perm)["l"]) == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "nope"},
        {"type": "object", "properties": {"a": {"type": 5}}},
        {"type": "object", "required": "a"},
        ["not", "an", "object"],
        "string",
    ],
)
def test_invalid_schemas_are_refused_with_a_sentence(bad: object) -> None:
    with pytest.raises(SchemaInvalidError) as info:
        check_schema(bad)
    assert "schema" in str(info.value)


def test_validate_names_the_first_error() -> None:
    assert validate({"name": 3}, PRODUCT) == "at name: 3 is not of type 'string'"
    assert validate({"name": "x"}, PRODUCT) is None


def test_a_single_answer_is_deduplicated_like_many() -> None:
    one = {"plants": ["a", "b", "a"], "nested": {"x": [{"k": 1}, {"k": 1}]}}
    assert merge_all([one]) == {"plants": ["a", "b"], "nested": {"x": [{"k": 1}]}}
    assert merge_all([one, {"plants": ["c"]}]) == {"plants": ["a", "b", "c"], "nested": {"x": [{"k": 1}]}}
