"""One event loop per Celery worker process, on a thread of its own, for async task code.

Celery tasks are plain functions run by the prefork pool; what they do is async (aiohttp,
redis.asyncio). `run(coro)` hands the coroutine to this process's loop, as
`asyncio.run_coroutine_threadsafe` does but carrying the caller's context variables (the
task id in the logs), and waits for it. The loop is started at `worker_process_init`
(after the fork: a child must not reuse its parent's loop or sockets) and closed at
`worker_process_shutdown`, after the closers registered with `on_shutdown` ran. Outside a prefork child (solo pool, a script, a test) the first `run`
starts it.

Why a thread and not `run_until_complete` on the task's own thread: the loop keeps
running between tasks, so pooled keep-alive connections are serviced and closed cleanly,
and when Celery's soft time limit raises in the task's thread, `run` cancels the
coroutine instead of leaving it half done on a stopped loop.

Celery's `task.request` is thread-local: read what you need from it before `run`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from celery.signals import worker_process_init, worker_process_shutdown

__all__ = ["on_shutdown", "process_local", "run", "start", "stop"]

T = TypeVar("T")
log = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 10.0


@dataclass(slots=True)
class _Loop:
    pid: int
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


_lock = threading.Lock()
_current: _Loop | None = None


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


def start() -> asyncio.AbstractEventLoop:
    """This process's loop, started if it is not running yet (idempotent)."""
    global _current
    with _lock:
        current = _current
        if current is not None and current.pid == os.getpid() and current.thread.is_alive():
            return current.loop
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=_serve, args=(loop,), name="worker-runtime", daemon=True)
        thread.start()
        _current = _Loop(os.getpid(), loop, thread)
        return loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on this process's loop and return its result (or raise its exception).

    If the waiting thread is interrupted (a soft time limit, a shutdown), the coroutine is
    cancelled on its loop and the interruption propagates here at once.
    """
    loop = start()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("worker_runtime.run() called from the runtime's own loop; await instead")
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    # The caller's context (task and request ids for the logs) goes with the coroutine.
    context = contextvars.copy_context()

    def submit() -> None:
        if future.cancelled():  # interrupted before it started
            coro.close()
            return
        task = loop.create_task(coro, context=context)
        task.add_done_callback(lambda done: _settle(done, future))
        future.add_done_callback(lambda f: f.cancelled() and loop.call_soon_threadsafe(task.cancel))

    loop.call_soon_threadsafe(submit)
    try:
        return future.result()
    except BaseException:
        future.cancel()  # a soft time limit or a shutdown in this thread: stop the work too
        raise


def _settle(task: asyncio.Task[T], future: concurrent.futures.Future[T]) -> None:
    # The future stays PENDING until now (a RUNNING one could not be cancelled by `run`).
    try:
        if task.cancelled():
            future.cancel()
        elif (exc := task.exception()) is not None:
            future.set_exception(exc)
        else:
            future.set_result(task.result())
    except concurrent.futures.InvalidStateError:
        pass  # `run` cancelled it meanwhile: nobody waits for the result


def on_shutdown(closer: Callable[[], Awaitable[None]]) -> None:
    """Await `closer()` on the loop when the worker process shuts down (close clients)."""
    start()
    assert _current is not None
    _current.closers.append(closer)


def process_local(factory: Callable[[], T]) -> Callable[[], T]:
    """A getter that makes `factory()` once per process: a prefork child makes its own."""
    made: dict[int, T] = {}
    lock = threading.Lock()

    def get() -> T:
        pid = os.getpid()
        value = made.get(pid)
        if value is None:
            with lock:
                if pid not in made:
                    made.clear()
                    made[pid] = factory()
                value = made[pid]
        return value

    return get


async def _close(closers: list[Callable[[], Awaitable[None]]]) -> None:
    for closer in reversed(closers):
        try:
            await closer()
        except Exception:
            log.exception("closing a worker resource failed")


def stop() -> None:
    """Run the closers, then stop and close this process's loop (no-op when none runs)."""
    global _current
    with _lock:
        current, _current = _current, None
    if current is None or current.pid != os.getpid() or not current.thread.is_alive():
        return
    loop = current.loop
    try:
        asyncio.run_coroutine_threadsafe(_close(current.closers), loop).result(STOP_TIMEOUT_SECONDS)
    except Exception:
        log.exception("worker runtime closers did not finish")
    loop.call_soon_threadsafe(loop.stop)
    current.thread.join(STOP_TIMEOUT_SECONDS)
    if not current.thread.is_alive():
        loop.close()


@worker_process_init.connect(weak=False)
def _on_process_init(**_: Any) -> None:
    start()


@worker_process_shutdown.connect(weak=False)
def _on_process_shutdown(**_: Any) -> None:
    stop()
