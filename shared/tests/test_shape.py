"""The request-shape checks on raw JSON text: depth and 64-bit integers, strings ignored."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from shared import MAX_JSON_DEPTH, AppError, check_headers
from shared._shape import check_json_shape


def nested(depth: int) -> Any:
    value: Any = 0
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def refusal(body: bytes | str) -> str | None:
    try:
        check_json_shape(body.encode() if isinstance(body, str) else body)
    except AppError as exc:
        assert exc.status_code == 422
        return exc.code
    return None


def test_depth_limit_counts_every_level_of_mixed_nesting() -> None:
    assert refusal(json.dumps(nested(MAX_JSON_DEPTH))) is None
    assert refusal(json.dumps(nested(MAX_JSON_DEPTH + 1))) == "json_too_deep"
    assert refusal("[" * 100_000 + "]" * 100_000) == "json_too_deep"
    # Brackets that never pair are refused before any parser recurses into them.
    assert refusal("[" * 100_000 + "}") == "json_too_deep"


def test_brackets_inside_strings_and_escapes_do_not_count() -> None:
    tricky = {"a": "[[[[" * 40, "b": 'quote " and backslash \\ then ]]]]' * 10, "c": "\\" * 7 + "["}
    assert refusal(json.dumps(tricky)) is None
    assert refusal(json.dumps({"x": ["]" * 50, nested(MAX_JSON_DEPTH - 2)]})) is None
    # ...while the real nesting around such strings still counts.
    assert refusal(json.dumps({"s": "]]]]]]", "deep": nested(MAX_JSON_DEPTH)})) == "json_too_deep"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("[9223372036854775807, -9223372036854775808]", None),
        ("[9223372036854775808]", "integer_out_of_range"),
        ("[-9223372036854775809]", "integer_out_of_range"),
        ('{"n": 18446744073709551616}', "integer_out_of_range"),
        ('{"s": "18446744073709551616"}', None),
        ("[18446744073709551616.5, 1e18446744073709551616, 1E-18446744073709551616]", None),
        ("[0.000000000000000000000001]", None),
    ],
)
def test_integers_must_fit_in_64_bits(body: str, code: str | None) -> None:
    assert refusal(body) == code


def test_a_large_body_is_checked_in_linear_time() -> None:
    body = json.dumps({"items": [{"t": "x" * 50, "d": {"a": [1, 2, 3]}}] * 50_000}).encode()
    started = time.perf_counter()
    assert refusal(body) is None
    assert time.perf_counter() - started < 2.0  # ~0.05 s here for 4 MB; generous under load


def test_headers_exactly_one_authorization_and_bounded_values() -> None:
    check_headers([(b"authorization", b"Bearer a" + b"x" * 20_000), (b"accept", b"*/*")])
    with pytest.raises(AppError) as two:
        check_headers([(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")])
    assert (two.value.status_code, two.value.code) == (400, "duplicate_authorization")
    with pytest.raises(AppError) as big:
        check_headers([(b"last-event-id", b"9" * 9000)])
    assert big.value.status_code == 431
