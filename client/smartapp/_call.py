"""A request described, not sent: `Call`, and the small pieces the endpoint modules build it from.

Both clients send the same `Call`s (see `_bind.py`), so the two never disagree on a path, a
body or a model: one place per endpoint, two transports.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypedDict, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from smartapp._models import TaskAccepted, TaskRetry

T = TypeVar("T")
U = TypeVar("U")
Item = TypeVar("Item")  # an item of a listing
M = TypeVar("M", bound=BaseModel)
A = TypeVar("A", bound=TaskAccepted)


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    # Submissions carry one; it stays the same across the client's own retries, so a retry
    # after a lost answer returns the task the first attempt made instead of a second one.
    idempotency_key: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        out = dict(self.extra_headers)
        if self.idempotency_key:
            out["Idempotency-Key"] = self.idempotency_key
        return out

    def request(self) -> dict[str, Any]:
        """The keyword arguments of `httpx.Client.request` (and of the async one) after method and URL."""
        return {"json": self.json, "params": self.params or None, "headers": self.headers()}

    def then(self, after: Callable[[T], U]) -> Call[U]:
        """The same request, its parsed answer passed through `after` (e.g. a list out of its page)."""
        parse = self.parse
        return Call(
            self.method,
            self.path,
            lambda r: after(parse(r)),
            self.json,
            self.params,
            self.idempotency_key,
            self.extra_headers,
        )

    @property
    def safe_to_repeat(self) -> bool:
        # A conditional write repeated after a lost answer would meet its own first write and
        # fail 412: better the transport error, which says the outcome is unknown.
        if {"If-Match", "If-None-Match"} & set(self.extra_headers):
            return False
        return self.method in {"GET", "PUT", "DELETE"} or self.idempotency_key is not None


@dataclass(frozen=True)
class Pages(Generic[Item]):
    """A listing read page after page: the request for one cursor (None: the first page),
    answered by that page's items and the next cursor (None after the last)."""

    page: Callable[[str | None], Call[tuple[list[Item], str | None]]]


class SubmitOptions(TypedDict, total=False):
    """What every submission may carry besides its own fields; left out or None: the server's
    default (the task type's, for `retry`). A keyword argument of each submission endpoint."""

    retry: TaskRetry | dict[str, Any] | None
    queue_timeout_seconds: float | None
    run_timeout_seconds: float | None
    idempotency_key: str | None  # the Idempotency-Key header; None: a fresh one


class TaskOptions(SubmitOptions, total=False):
    """`submit_task`'s and `submit_long_running`'s: also when, how urgently, and who is told."""

    countdown: float | None
    priority: int | None
    callback_url: str | None


class ScrapeOptions(SubmitOptions, total=False):
    """`scrape`'s: also the model, what to extract, and what of the page counts."""

    openai_key: str | None
    model: str | None
    prompt: str | None
    schema: dict[str, Any] | None
    max_age: int | None
    include_selectors: list[str] | None
    exclude_selectors: list[str] | None
    headers: dict[str, str] | None


def submit(path: str, fields: dict[str, Any], options: SubmitOptions) -> Call[TaskAccepted]:
    """A submission: its own `fields` and the `options` given, with an Idempotency-Key."""
    given: dict[str, Any] = dict(options)
    idempotency_key = given.pop("idempotency_key", None)
    if isinstance(retry := given.get("retry"), TaskRetry):
        given["retry"] = retry.model_dump(exclude_none=True)
    body = {**fields, **present(**given)}
    return Call("POST", path, accepted(TaskAccepted), body, idempotency_key=key(idempotency_key))


def seg(value: str) -> str:
    """One path segment: an id or a cache key can never climb to another endpoint (`../`)."""
    if not value:
        raise ValueError("an id or key must not be empty")
    return quote(value, safe="")


def iso(value: datetime | str) -> str:
    """A time for the API: an aware datetime as ISO 8601 (the platform refuses a naive one, 422)."""
    return value.isoformat() if isinstance(value, datetime) else value


def present(**values: Any) -> dict[str, Any]:
    """The fields that were given: None leaves a field out (the server's default applies)."""
    return {k: iso(v) if isinstance(v, datetime) else v for k, v in values.items() if v is not None}


def key(given: str | None) -> str:
    """A submission's Idempotency-Key: the caller's, or a fresh one."""
    return given or str(uuid.uuid4())


def model(cls: type[M]) -> Callable[[httpx.Response], M]:
    return lambda r: cls.model_validate(r.json())


def accepted(cls: type[A]) -> Callable[[httpx.Response], A]:
    """A `202` of a submission, with the `X-Request-ID` the platform's logs of it carry."""

    def parse(r: httpx.Response) -> A:
        answer = cls.model_validate(r.json())
        answer._request_id = r.headers.get("X-Request-ID")
        return answer

    return parse


def nothing(_: httpx.Response) -> None:
    return None
