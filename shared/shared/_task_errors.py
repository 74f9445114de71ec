"""How a task says why it did not succeed, and what its owner is shown of that.

Tasks raise TaskCancelled, Continuation or a PublicTaskError; error_view turns any exception
into the `error` of the task's record: a public message, the run timeout, or only the type.
"""

from __future__ import annotations

from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from shared._retries import NonRetryable


class TaskCancelled(Exception):
    """Raised inside a task when its owner cancelled it; the task ends REVOKED."""


class Continuation(Exception):
    """Raised through task.retry() to hand a long task over to a fresh delivery (not a failure)."""


class PublicTaskError(NonRetryable):
    """A failure whose message is safe and useful to show the task's owner.

    Not retried unless a subclass sets `retryable = True`."""

    retryable = False


QUEUE_TIMEOUT_ERROR = {"type": "QueueTimeout", "message": "Not started within its queue_timeout_seconds."}


# The soft limit raised in the task, or the hard one: the pool process killed, reported by the
# worker's main process (Celery calls on_failure there with TimeLimitExceeded).
RUN_TIMEOUTS = (SoftTimeLimitExceeded, TimeLimitExceeded)


def error_view(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, RUN_TIMEOUTS):
        return {
            "type": "TimeLimitExceeded",
            "message": "Stopped: it ran longer than its run_timeout_seconds.",
        }
    if isinstance(exc, PublicTaskError):
        return {"type": type(exc).__name__, "message": str(exc)[:1000]}
    # Unknown exceptions may carry internals; the owner sees the type, operators the log.
    return {"type": type(exc).__name__, "message": "The task failed with an internal error."}
