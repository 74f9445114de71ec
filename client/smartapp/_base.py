"""What `Client` and `AsyncClient` share: settings, every endpoint, and the decisions of a request.

The endpoints come from the `_api_*` modules (each written once, see `_bind.py`); the
decisions (retry after how long, or raise what) are made here from what the transport saw,
so the two clients' `_send` differ only in `await`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

import httpx

from smartapp._api_cache import CacheAPI
from smartapp._api_notifications import NotificationsAPI
from smartapp._api_schedules import SchedulesAPI
from smartapp._api_tasks import TasksAPI
from smartapp._call import Call
from smartapp._errors import TransportError, error_from_response
from smartapp._stream import RetryPolicy, StreamPolicy

API_PREFIX = "/smart_application/tasks"
DEFAULT_URL = "http://localhost:8000"

H = TypeVar("H", httpx.Client, httpx.AsyncClient)
TR = TypeVar("TR", httpx.BaseTransport, httpx.AsyncBaseTransport)


def version() -> str:
    try:
        from importlib.metadata import version

        return version("smartapp")
    except Exception:  # not installed (a source checkout on sys.path)
        return "0"


class BaseClient(TasksAPI, NotificationsAPI, CacheAPI, SchedulesAPI, Generic[H, TR]):
    """Settings and endpoints; `H` is the httpx client it sends with, `TR` its transport type."""

    is_async: ClassVar[bool]

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        stream: StreamPolicy | None = None,
        headers: dict[str, str] | None = None,
        transport: TR | None = None,
    ) -> None:
        base = base_url.rstrip("/")
        if not base.endswith(API_PREFIX):
            base += API_PREFIX
        self.base_url = base
        self._retry_policy = RetryPolicy(max_retries=max_retries, max_wait=max_retry_wait)
        self._stream_policy = stream or StreamPolicy()
        sent = {"User-Agent": f"smartapp-python/{version()}", **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        self._http: H = self._connect(headers=sent, timeout=timeout, transport=transport)

    def _connect(self, *, headers: dict[str, str], timeout: float, transport: TR | None) -> H:
        raise NotImplementedError

    def _wait_after(
        self, call: Call[Any], seen: httpx.Response | httpx.TransportError, attempt: int
    ) -> float:
        """Seconds to wait before trying `call` again after what it met, or raise it as final."""
        if isinstance(seen, httpx.TransportError):
            wait = self._retry_policy.wait_for_transport(seen, call.safe_to_repeat, attempt)
            if wait is None:
                raise TransportError(f"{type(seen).__name__}: {seen}") from seen
            return wait
        wait = self._retry_policy.wait_for_status(seen, attempt)
        if wait is None:
            raise error_from_response(seen)
        return wait
