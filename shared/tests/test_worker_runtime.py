"""The worker runtime: one loop on its own thread per process; run() waits, cancels, closes."""

from __future__ import annotations

import asyncio
import signal
import threading
from email.utils import formatdate

import pytest

from shared import origin_of, parse_retry_after, worker_runtime
from shared._context import task_id_var


def test_run_returns_results_and_raises_errors_on_one_loop_thread() -> None:
    async def where() -> tuple[int, asyncio.AbstractEventLoop]:
        return threading.get_ident(), asyncio.get_running_loop()

    async def fail() -> None:
        raise ValueError("boom")

    try:
        first, second = worker_runtime.run(where()), worker_runtime.run(where())
        assert first == second  # the same loop, kept between calls
        assert first[0] != threading.get_ident()  # not the caller's thread
        with pytest.raises(ValueError, match="boom"):
            worker_runtime.run(fail())
    finally:
        worker_runtime.stop()


def test_run_carries_context_and_an_interruption_cancels_the_coroutine() -> None:
    cancelled = threading.Event()

    async def task_id() -> str | None:
        return task_id_var.get()

    async def long() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    class SoftLimit(Exception):
        pass

    def on_alarm(*_: object) -> None:
        raise SoftLimit  # as Celery's soft time limit does, in the waiting thread

    token = task_id_var.set("t-1")
    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        assert worker_runtime.run(task_id()) == "t-1"
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(SoftLimit):
            worker_runtime.run(long())
        assert cancelled.wait(5)
    finally:
        signal.signal(signal.SIGALRM, old)
        task_id_var.reset(token)
        worker_runtime.stop()


def test_stop_runs_closers_and_a_new_loop_starts_after() -> None:
    closed: list[str] = []

    async def closer() -> None:
        closed.append("client")

    async def loop_of() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    old = worker_runtime.run(loop_of())
    worker_runtime.on_shutdown(closer)
    worker_runtime.stop()
    assert closed == ["client"] and old.is_closed()
    try:
        assert worker_runtime.run(loop_of()) is not old
    finally:
        worker_runtime.stop()
    assert closed == ["client"]  # a closer runs once, with the loop it was registered on


def test_process_local_makes_one_value_per_process() -> None:
    made: list[int] = []
    get = worker_runtime.process_local(lambda: made.append(1) or len(made))
    assert (get(), get()) == (1, 1) and made == [1]


def test_parse_retry_after_seconds_dates_and_clamps() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("2", now=now) == 2.0
    assert parse_retry_after("1.5", now=now) == 1.5
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("99999999", now=now, cap=900) == 900
    for bad in (None, "", "-5", "soon", "nan", "Mon, 30 Nov 2026 10:00:00"):
        assert parse_retry_after(bad, now=now) is None, bad


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("HTTPS://Example.COM:443/a?b", "https://example.com"),
        ("http://example.com:8080/x", "http://example.com:8080"),
        ("http://[::1]:8000/", "http://[::1]:8000"),
    ],
)
def test_origin_of(url: str, origin: str) -> None:
    assert origin_of(url) == origin
