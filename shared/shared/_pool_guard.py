"""A guard for a worker crash on reconnect: `Unrecoverable error: ValueError('file descriptor is None')`.

What happens: on a lost broker connection the worker cancels its running late-ack tasks
(worker_cancel_long_running_tasks_on_connection_loss), which kills their pool processes.
When the event loop has already seen such a process exit (its sentinel fd is then set to
None) but the pool has not yet reaped it, the next reconnect registers the pool with the
event loop again, including the dead process and its None fd. Celery drops an fd that fails
there, through `iterate_file_descriptors_safely`, but only on OSError or AttributeError
(celery#9250, celery#10318), while kombu 5.7 now raises ValueError for a None fd
(kombu#2623, which expected Celery to catch ValueError). Each fix assumes the other: the
ValueError escapes and the whole worker stops.

The guard turns that ValueError into the OSError Celery expects, so the stale fd is dropped
and the pool replaces the process as it always does. Harmless once Celery catches it itself.
"""

from __future__ import annotations

from typing import Any

_INSTALLED = "_smartapp_valueerror_guard"


def install_pool_fd_guard() -> None:
    """Patch celery.concurrency.asynpool once per process (the prefork pool's event loop side)."""
    from celery.concurrency import asynpool

    original = asynpool.iterate_file_descriptors_safely
    if getattr(original, _INSTALLED, False):
        return

    def iterate_file_descriptors_safely(
        fds_iter: Any, source_data: Any, hub_method: Any, *args: Any, **kwargs: Any
    ) -> Any:
        def guarded(fd: Any, *a: Any, **kw: Any) -> Any:
            try:
                return hub_method(fd, *a, **kw)
            except ValueError as exc:  # a None or closed fd: stale, like the OSErrors Celery drops
                raise OSError(f"stale file descriptor {fd!r}: {exc}") from exc

        return original(fds_iter, source_data, guarded, *args, **kwargs)

    setattr(iterate_file_descriptors_safely, _INSTALLED, True)
    asynpool.iterate_file_descriptors_safely = iterate_file_descriptors_safely
