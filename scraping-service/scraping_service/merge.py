"""Structured Outputs schemas and the deterministic merge of per-chunk extractions.

OpenAI's strict mode accepts only a subset of JSON Schema: the root is an object, every object
has `additionalProperties: false` and lists every property as required. A user's schema rarely
says so, so we send a strict twin of it: non-object roots are wrapped in `{"value": ...}`,
optional properties become required-but-nullable, and the answer is mapped back (unwrapped,
nulls of optional properties dropped) before it is validated against the user's own schema.

Chunks are merged in code, never by asking a model to concatenate: objects key by key, arrays
concatenated and de-duplicated stably (first occurrence wins, compared as canonical JSON),
and a null or empty string filled by a later chunk. The same inputs always give the same output.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from typing import Any

import orjson

# Checking and applying a user's schema lives in schema_validation (no fetching, RE2 patterns);
# named here too because the model client validates its answers through this module.
from .schema_validation import SchemaInvalidError, check_schema, validate

__all__ = [
    "SchemaInvalidError",
    "check_schema",
    "dedupe_arrays",
    "from_strict",
    "merge_all",
    "merge_values",
    "strict_schema",
    "validate",
]

WRAP_KEY = "value"


def _is_object_schema(node: dict[str, Any]) -> bool:
    t = node.get("type")
    return t == "object" or (isinstance(t, list) and "object" in t) or "properties" in node


def _nullable(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    node = dict(node)
    t = node.get("type")
    if isinstance(t, str):
        if t != "null":
            node["type"] = [t, "null"]
    elif isinstance(t, list):
        if "null" not in t:
            node["type"] = [*t, "null"]
    else:
        return {"anyOf": [node, {"type": "null"}]}
    if "enum" in node and None not in node["enum"]:
        node["enum"] = [*node["enum"], None]
    return node


_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
_SCHEMA_ONE = ("items", "additionalItems", "contains", "not", "if", "then", "else")


def _strictify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    out = dict(node)
    for key in _SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            out[key] = {name: _strictify(sub) for name, sub in node[key].items()}
    for key in _SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            out[key] = [_strictify(sub) for sub in node[key]]
    for key in _SCHEMA_ONE:
        if isinstance(node.get(key), dict):
            out[key] = _strictify(node[key])
    if _is_object_schema(node):
        props: dict[str, Any] = out.get("properties") or {}
        required = set(node.get("required") or [])
        out["properties"] = {name: sub if name in required else _nullable(sub) for name, sub in props.items()}
        out["required"] = list(props)
        out["additionalProperties"] = False
    return out


def strict_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Return (strict twin of schema, whether the root was wrapped in {"value": ...})."""
    schema = copy.deepcopy(schema)
    defs: dict[str, Any] = {k: schema.pop(k) for k in ("$defs", "definitions") if k in schema}
    schema.pop("$schema", None)
    schema.pop("$id", None)
    wrapped = not (schema.get("type") == "object" and isinstance(schema.get("properties"), dict))
    if wrapped:
        schema = {"type": "object", "properties": {WRAP_KEY: schema}, "required": [WRAP_KEY]}
    schema.update(defs)
    strict: dict[str, Any] = _strictify(schema)
    return strict, wrapped


def _resolve(node: Any, root: dict[str, Any]) -> Any:
    ref = node.get("$ref") if isinstance(node, dict) else None
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            if not isinstance(target, dict) or part not in target:
                return node
            target = target[part]
        return target
    return node


def _drop_optional_nulls(value: Any, node: Any, root: dict[str, Any]) -> Any:
    node = _resolve(node, root)
    if not isinstance(node, dict):
        return value
    if isinstance(value, dict) and isinstance(node.get("properties"), dict):
        required = set(node.get("required") or [])
        props = node["properties"]
        out = {}
        for key, item in value.items():
            if item is None and key not in required:
                continue
            out[key] = _drop_optional_nulls(item, props.get(key), root)
        return out
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_drop_optional_nulls(v, node["items"], root) for v in value]
    return value


def from_strict(answer: Any, schema: dict[str, Any], wrapped: bool) -> Any:
    """Map a strict-mode answer back to the shape of the user's schema."""
    if wrapped:
        answer = answer.get(WRAP_KEY) if isinstance(answer, dict) else answer
        return _drop_optional_nulls(answer, schema, schema)
    return _drop_optional_nulls(answer, schema, schema)


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _unique(items: Iterable[Any]) -> list[Any]:
    """The items with repeats (equal as canonical JSON) removed, first occurrence kept."""
    seen: set[bytes] = set()
    out = []
    for item in items:
        key = _canonical(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _empty(value: Any) -> bool:
    return value is None or value == ""


def merge_values(first: Any, later: Any) -> Any:
    """Merge a later chunk's value into an earlier one's."""
    if _empty(first):
        return later if later is not None else first
    if _empty(later):
        return first
    if isinstance(first, dict) and isinstance(later, dict):
        out = dict(first)
        for key, value in later.items():
            out[key] = merge_values(out[key], value) if key in out else value
        return out
    if isinstance(first, list) and isinstance(later, list):
        return _unique([*first, *later])
    # Two different scalars: the earlier chunk (nearer the top of the page) wins.
    return first


def dedupe_arrays(value: Any) -> Any:
    """Every array, at any depth, with repeated items removed (first occurrence kept)."""
    if isinstance(value, dict):
        return {k: dedupe_arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return _unique(dedupe_arrays(v) for v in value)
    return value


def merge_all(values: Iterable[Any]) -> Any:
    """Merge chunk answers in page order; the same answers always give the same result."""
    return dedupe_arrays(functools.reduce(merge_values, values, None))
