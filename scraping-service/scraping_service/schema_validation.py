"""Users' JSON Schemas, checked and applied without fetching anything or backtracking.

A schema comes from a user and is applied to a model's answer, which a page can steer. Two
things jsonschema would otherwise do with it are refused here:

- **Fetching.** A `$ref` to a URL is resolved by jsonschema's default registry with urllib,
  past the platform's SSRF rules. Here every `$ref` (and `$dynamicRef`, `$recursiveRef`) must
  be local (`#...`): anything else is a 422 at submission. And the validator's
  `referencing.Registry` refuses every retrieval, so nothing can be fetched in the worker
  either, whatever a schema says.
- **Backtracking.** jsonschema matches `pattern` and `patternProperties` with Python's `re`,
  where `^(a+)+b|a*$` takes exponential time. Here they are matched with RE2 (google-re2), in
  time linear in the input; a pattern RE2 cannot compile (backreferences, lookaround) is a 422
  at submission. The keywords that match patterns (`pattern`, `patternProperties`,
  `additionalProperties`) are replaced by RE2 twins; `unevaluatedProperties`, whose pattern
  matching is buried in jsonschema's internals, is refused next to `patternProperties`.
  The `regex` format (which the metaschema puts on every `pattern`) is checked with RE2 too.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import jsonschema
import re2
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import extend, validator_for
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable
from referencing.jsonschema import DRAFT202012

__all__ = ["SchemaInvalidError", "check_schema", "validate"]

_REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a user's bad pattern is a 422, not a line on stderr


class SchemaInvalidError(ValueError):
    """The user's schema is not a valid JSON Schema, or not one we apply (a 422 at the API)."""


def _refuse_retrieval(uri: str) -> Resource[Any]:
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # an attrs class


# Every retrieval refused: only the schema itself and the bundled metaschemas resolve.
NO_RETRIEVAL: Registry[Any] = Registry(retrieve=_refuse_retrieval)  # type: ignore[call-arg]


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _RE2_OPTIONS)


def _re2_error(pattern: str) -> str | None:
    try:
        _compiled(pattern)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        return str(reason)
    return None


FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("regex", raises=re2.error)
def _is_re2(instance: object) -> bool:
    return not isinstance(instance, str) or _compiled(instance) is not None


def _pattern(
    validator: Validator, patrn: str, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _compiled(patrn).search(instance):
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


def _pattern_properties(
    validator: Validator, patterns: dict[str, Any], instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        compiled = _compiled(pattern)
        for key, value in instance.items():
            if compiled.search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _extras(instance: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    properties = schema.get("properties", {})
    patterns = [_compiled(p) for p in schema.get("patternProperties", {})]
    return [key for key in instance if key not in properties and not any(p.search(key) for p in patterns)]


def _additional_properties(
    validator: Validator, additional: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    extras = _extras(instance, schema)
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        listed = ", ".join(repr(e) for e in sorted(extras))
        verb = "was" if len(extras) == 1 else "were"
        yield ValidationError(f"Additional properties are not allowed ({listed} {verb} unexpected)")


_RE2_KEYWORDS = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
}


_SAFE_CLASSES: dict[type[Validator], type[Validator]] = {}


def _safe_class(base: type[Validator]) -> type[Validator]:
    """`base` (the schema's draft) with the pattern keywords matched by RE2 (made once)."""
    safe = _SAFE_CLASSES.get(base)
    if safe is None:
        validators = {k: v for k, v in _RE2_KEYWORDS.items() if k in base.VALIDATORS}
        safe = _SAFE_CLASSES[base] = extend(base, validators=validators)
    return safe


def _draft(schema: dict[str, Any]) -> type[Validator]:
    base: type[Validator] = validator_for(schema, default=jsonschema.Draft202012Validator)
    return _safe_class(base)


def _subschemas(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every (sub)schema, found the way the schema's own draft finds them (`referencing`)."""
    stack = [Resource.from_contents(schema, default_specification=DRAFT202012)]
    while stack:
        resource = stack.pop()
        if isinstance(resource.contents, dict):
            yield resource.contents
        stack.extend(resource.subresources())


def _where(node: dict[str, Any]) -> str:
    return str(node.get("$id") or node.get("title") or "a subschema")


def _check_safe(schema: dict[str, Any]) -> None:
    has_pattern_properties = has_unevaluated = False
    for node in _subschemas(schema):
        for keyword in _REF_KEYWORDS:
            ref = node.get(keyword)
            if isinstance(ref, str) and not ref.startswith("#"):
                raise SchemaInvalidError(
                    f"schema {keyword} {ref[:200]!r} is not local: only references inside the "
                    "schema ('#/$defs/...') are allowed; nothing is fetched."
                )
        pattern = node.get("pattern")
        if isinstance(pattern, str) and (why := _re2_error(pattern)):
            raise SchemaInvalidError(f"schema pattern {pattern[:200]!r} is not supported (RE2): {why}.")
        props = node.get("patternProperties")
        if isinstance(props, dict):
            has_pattern_properties = True
            for key in props:
                if why := _re2_error(key):
                    raise SchemaInvalidError(
                        f"schema patternProperties {key[:200]!r} is not supported (RE2): {why}."
                    )
        has_unevaluated = has_unevaluated or "unevaluatedProperties" in node
    if has_pattern_properties and has_unevaluated:
        raise SchemaInvalidError(
            "schema: unevaluatedProperties cannot be combined with patternProperties here."
        )


def check_schema(schema: Any) -> None:
    """Raise SchemaInvalidError with a sentence when schema is not a usable, safe JSON Schema."""
    if not isinstance(schema, dict):
        raise SchemaInvalidError("schema must be a JSON object describing a JSON Schema.")
    cls = _draft(schema)
    try:
        cls.check_schema(schema, format_checker=FORMATS)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        raise SchemaInvalidError(f"schema is not a valid JSON Schema at {where}: {exc.message}") from None
    _check_safe(schema)


def validate(instance: Any, schema: dict[str, Any]) -> str | None:
    """Return None when instance conforms to schema, else a sentence naming the first error.

    Never fetches (every retrieval is refused) and matches patterns with RE2.
    """
    validator = _draft(schema)(schema, registry=NO_RETRIEVAL, format_checker=FORMATS)
    try:
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    except Unresolvable as exc:
        return f"the schema refers to something it does not contain ({exc}); nothing is fetched"
    except re2.error:
        return "the schema has a pattern RE2 cannot match"
    if not errors:
        return None
    first = errors[0]
    where = "/".join(str(p) for p in first.absolute_path) or "(root)"
    return f"at {where}: {first.message}"
