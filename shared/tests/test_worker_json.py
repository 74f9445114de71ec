"""The workers' decoder of kombu's "json" messages reads what kombu's own reads, the same way."""

from __future__ import annotations

import datetime
import uuid

import pytest
from kombu.utils import json as kombu_json

from shared._worker_hooks import _loads_json

SAMPLES = [
    [[], {"task_type": "noop", "data": {"i": 1}}, {"callbacks": None, "errbacks": None, "chain": None}],
    {"unicode": "zaż\u00f3\u0142\u0107 \U0001f600", "float": 1.5, "neg": -3, "nested": [[{"a": [1, 2]}]]},
    # kombu's typed objects go through kombu's decoder
    {"when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC), "id": uuid.UUID(int=7)},
    {"big": 2**70, "nan": float("nan")},  # orjson refuses these: kombu's decoder reads them
]


@pytest.mark.parametrize("value", SAMPLES)
@pytest.mark.parametrize("kind", [bytes, str, memoryview, bytearray])
def test_reads_what_kombu_reads(value: object, kind: type) -> None:
    text = kombu_json.dumps(value)
    raw = text if kind is str else kind(text.encode())
    got, want = _loads_json(raw), kombu_json.loads(text)
    assert repr(got) == repr(want)  # repr: NaN is not equal to itself
