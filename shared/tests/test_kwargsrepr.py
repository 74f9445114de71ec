"""What logs, events and Flower show of a task's arguments: secrets masked, size bounded."""

from __future__ import annotations

import orjson

from shared._celery import KWARGSREPR_MAX, REDACTED, redacted_repr


def test_secret_arguments_are_masked_and_the_rest_shown_as_json() -> None:
    shown = redacted_repr({"key_ref": "vault:abc", "url": "https://example.test/"}, frozenset({"key_ref"}))
    assert orjson.loads(shown) == {"key_ref": REDACTED, "url": "https://example.test/"}
    assert "vault:abc" not in shown


def test_a_megabyte_of_data_is_cut_to_the_bound() -> None:
    shown = redacted_repr({"data": {"blob": "x" * 1_000_000}}, frozenset())
    assert len(shown) == KWARGSREPR_MAX
    assert shown.startswith('{"data":{"blob":"xxx') and shown.endswith("...")


def test_what_json_cannot_hold_falls_back_to_a_bounded_repr() -> None:
    shown = redacted_repr({"n": 2**70, "secret": "s3cret"}, frozenset({"secret"}))
    assert shown == f"{{'n': {2**70}, 'secret': '{REDACTED}'}}"
