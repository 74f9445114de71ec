"""The registry of background task types: adding a type is one decorated function."""

from __future__ import annotations

import hashlib
import math
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared import PublicTaskError

Handler = Callable[[Any], dict[str, Any]]

# The attempt being run (1 for the first), set by the worker around a handler: `fail` reads it.
current_attempt: ContextVar[int] = ContextVar("current_attempt", default=1)
# Called now and then by long handlers (`sleep`); raises when the task was cancelled.
cancel_check: ContextVar[Callable[[], None] | None] = ContextVar("cancel_check", default=None)


@dataclass(frozen=True)
class TaskKind:
    name: str
    description: str
    model: type[BaseModel]
    handler: Handler
    # Attempts when the submission sets no retry policy (a `retry` object may ask for up to 20).
    default_max_attempts: int = 1

    def parse(self, data: dict[str, Any]) -> BaseModel:
        return self.model.model_validate(data)

    def input_schema(self) -> dict[str, Any]:
        """The JSON Schema of `data`, as validated at submission (pydantic's, validation mode)."""
        return self.model.model_json_schema(mode="validation")

    def run(self, data: dict[str, Any]) -> dict[str, Any]:
        try:
            parsed = self.parse(data)
        except ValidationError as exc:  # checked at submission too; re-checked for old messages
            raise PublicTaskError(f"Invalid data for {self.name}: {exc.errors()[0]['msg']}") from None
        return self.handler(parsed)


REGISTRY: dict[str, TaskKind] = {}


def task_kind(name: str, description: str, *, default_max_attempts: int = 1) -> Callable[[Handler], Handler]:
    """Register the decorated handler as task type `name`; its `data` is validated as the model
    its `params` argument is annotated with, and the handler is given that model."""

    def register(fn: Handler) -> Handler:
        model = get_type_hints(fn)["params"]
        REGISTRY[name] = TaskKind(name, description, model, fn, default_max_attempts)
        return fn

    return register


def known_kinds() -> list[str]:
    return sorted(REGISTRY)


# --- data_processing ---------------------------------------------------------------------------


class DataProcessing(BaseModel):
    """Any JSON object; optional 'operations' steer what is done to strings and records."""

    model_config = ConfigDict(extra="allow")
    operations: list[str] = Field(default_factory=lambda: ["trim", "normalize_whitespace"], max_length=20)
    sort_by: str | None = None
    dedupe: bool = True


_STRING_OPS: dict[str, Callable[[str], str]] = {
    "trim": str.strip,
    "lowercase": str.lower,
    "uppercase": str.upper,
    "normalize_whitespace": lambda s: re.sub(r"\s+", " ", s),
    "slugify": lambda s: re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-"),
}


def _number_stats(values: list[float]) -> dict[str, Any]:
    return {
        "type": "numbers",
        "count": len(values),
        "sum": math.fsum(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "stdev": statistics.pstdev(values),
    }


def _process(value: Any, ops: list[str], sort_by: str | None, dedupe: bool) -> tuple[Any, dict[str, Any]]:
    if isinstance(value, str):
        out = value
        for op in ops:
            out = _STRING_OPS[op](out)
        words = out.split()
        return out, {
            "type": "string",
            "length": len(out),
            "words": len(words),
            "sha256": hashlib.sha256(out.encode()).hexdigest(),
        }
    if isinstance(value, bool) or value is None:
        return value, {"type": type(value).__name__.lower()}
    if isinstance(value, int | float):
        return value, {"type": "number"}
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        return value, _number_stats([float(v) for v in value])
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        records = [_process(v, ops, None, dedupe)[0] for v in value]
        before = len(records)
        if dedupe:
            seen: set[str] = set()
            unique = []
            for rec in records:
                fingerprint = repr(sorted(rec.items(), key=lambda kv: kv[0]))
                if fingerprint not in seen:
                    seen.add(fingerprint)
                    unique.append(rec)
            records = unique
        if sort_by:
            records.sort(key=lambda r: (r.get(sort_by) is None, str(type(r.get(sort_by))), r.get(sort_by)))
        fields = sorted({k for r in records for k in r})
        return records, {
            "type": "records",
            "count": len(records),
            "duplicates_removed": before - len(records),
            "fields": fields,
        }
    if isinstance(value, list):
        items = [_process(v, ops, sort_by, dedupe)[0] for v in value]
        return items, {"type": "list", "count": len(items)}
    if isinstance(value, dict):
        processed: dict[str, Any] = {}
        stats: dict[str, Any] = {}
        for k, v in value.items():
            processed[k], stats[k] = _process(v, ops, sort_by, dedupe)
        return processed, {"type": "object", "fields": stats}
    return value, {"type": "unknown"}


@task_kind(
    "data_processing",
    "Clean and describe any JSON: strings trimmed and normalised (operations: trim, lowercase, "
    "uppercase, normalize_whitespace, slugify), number lists summarised, record lists "
    "de-duplicated and sorted (sort_by).",
)
def data_processing(params: DataProcessing) -> dict[str, Any]:
    unknown = [op for op in params.operations if op not in _STRING_OPS]
    if unknown:
        raise PublicTaskError(f"Unknown operations {unknown}; known: {sorted(_STRING_OPS)}")
    payload = dict(params.model_extra or {})
    processed, stats = _process(payload, params.operations, params.sort_by, params.dedupe)
    return {"processed": processed, "stats": stats["fields"], "operations": params.operations}


# --- text_analysis -----------------------------------------------------------------------------

_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "he",
        "her",
        "his",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "our",
        "she",
        "that",
        "the",
        "their",
        "them",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "will",
        "with",
        "you",
        "your",
        "not",
        "no",
        "so",
        "if",
        "then",
        "than",
    ]
)
_WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)
_SENTENCE_RE = re.compile(r"[.!?]+(?:\s|$)")


class TextAnalysis(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=500_000)
    top: int = Field(default=10, ge=1, le=100)
    words_per_minute: int = Field(default=230, ge=50, le=1000)


@task_kind(
    "text_analysis",
    "Word, sentence and character counts, the most frequent terms (stop words excluded) and "
    "reading time of {'text': ...}.",
)
def text_analysis(params: TextAnalysis) -> dict[str, Any]:
    words = [w.lower() for w in _WORD_RE.findall(params.text)]
    sentences = max(1, len(_SENTENCE_RE.findall(params.text.strip()))) if words else 0
    terms = Counter(w for w in words if w not in _STOPWORDS and len(w) > 1)
    return {
        "characters": len(params.text),
        "words": len(words),
        "unique_words": len(set(words)),
        "sentences": sentences,
        "average_word_length": round(sum(map(len, words)) / len(words), 2) if words else 0,
        "reading_time_seconds": math.ceil(len(words) * 60 / params.words_per_minute),
        "top_terms": [{"term": t, "count": c} for t, c in terms.most_common(params.top)],
    }


# --- aggregate ---------------------------------------------------------------------------------

_AGGREGATES: dict[str, Callable[[list[float]], float]] = {
    "sum": math.fsum,
    "avg": statistics.fmean,
    "min": min,
    "max": max,
    "median": statistics.median,
}


class Aggregate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    records: list[dict[str, Any]] = Field(min_length=1, max_length=100_000)
    group_by: str | list[str]
    metrics: dict[str, list[str]] = Field(default_factory=dict)


@task_kind(
    "aggregate",
    "Group {'records': [...]} by one or more fields and compute count plus sum/avg/min/max/median "
    "of numeric fields named in 'metrics' ({'amount': ['sum', 'avg']}).",
)
def aggregate(params: Aggregate) -> dict[str, Any]:
    keys = [params.group_by] if isinstance(params.group_by, str) else params.group_by
    for field, aggs in params.metrics.items():
        bad = [a for a in aggs if a not in _AGGREGATES]
        if bad:
            raise PublicTaskError(f"Unknown aggregates {bad} for {field!r}; known: {sorted(_AGGREGATES)}")
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for rec in params.records:
        groups.setdefault(tuple(rec.get(k) for k in keys), []).append(rec)
    rows = []
    skipped = 0
    for group_key, recs in groups.items():
        row: dict[str, Any] = dict(zip(keys, group_key, strict=True))
        row["count"] = len(recs)
        for field, aggs in params.metrics.items():
            values = []
            for r in recs:
                v = r.get(field)
                if isinstance(v, int | float) and not isinstance(v, bool):
                    values.append(float(v))
                elif v is not None:
                    skipped += 1
            for agg in aggs:
                row[f"{field}_{agg}"] = _AGGREGATES[agg](values) if values else None
        rows.append(row)
    rows.sort(key=lambda r: tuple(str(r[k]) for k in keys))
    return {"groups": rows, "group_count": len(rows), "non_numeric_skipped": skipped}


# --- noop --------------------------------------------------------------------------------------


class Noop(BaseModel):
    model_config = ConfigDict(extra="allow")


@task_kind("noop", "Does nothing and returns its data: for probes and benchmarks.")
def noop(params: Noop) -> dict[str, Any]:
    return {"echo": params.model_extra or {}}


# --- sleep and fail: for clients testing their integrations --------------------------------

MAX_SLEEP_SECONDS = 3600
SLEEP_TICK = 0.5


class Sleep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=MAX_SLEEP_SECONDS)


@task_kind("sleep", "Waits {'seconds': 0-3600} and returns; cancellable while it waits.")
def sleep(params: Sleep) -> dict[str, Any]:
    end = time.monotonic() + params.seconds
    check = cancel_check.get()
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(SLEEP_TICK, left))
        if check is not None:
            check()
    return {"slept_seconds": params.seconds}


class FailedOnPurpose(PublicTaskError):
    """The `fail` task's error: retryable, unlike other public errors (validation and the like)."""

    retryable = True


class Fail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field(default="Failed on purpose.", max_length=1000)
    succeed_after: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Fail the first n attempts, then succeed; always fail without it.",
    )


@task_kind(
    "fail",
    "Fails with {'message'}; with 'succeed_after': n it fails its first n attempts, then succeeds "
    "(try it with a `retry` policy). One attempt unless the submission's `retry` asks for more.",
)
def fail(params: Fail) -> dict[str, Any]:
    attempt = current_attempt.get()
    if params.succeed_after is None or attempt <= params.succeed_after:
        raise FailedOnPurpose(params.message)
    return {"attempt": attempt, "succeeded_after": params.succeed_after}
