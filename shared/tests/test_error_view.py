"""What a task's owner sees of its failure: time limits name the run timeout, internals stay hidden."""

from __future__ import annotations

import pytest
from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from shared._task_errors import PublicTaskError, error_view

RUN_TIMEOUT = {"type": "TimeLimitExceeded", "message": "Stopped: it ran longer than its run_timeout_seconds."}


@pytest.mark.parametrize(
    "exc",
    [SoftTimeLimitExceeded(), TimeLimitExceeded(6.0)],
    ids=["soft limit, raised in the task", "hard limit, reported by the main process"],
)
def test_both_time_limits_read_as_the_run_timeout(exc: BaseException) -> None:
    assert error_view(exc) == RUN_TIMEOUT


def test_a_public_error_keeps_its_message_and_an_internal_one_hides_it() -> None:
    assert error_view(PublicTaskError("bad input: x")) == {
        "type": "PublicTaskError",
        "message": "bad input: x",
    }
    assert error_view(KeyError("secret internals")) == {
        "type": "KeyError",
        "message": "The task failed with an internal error.",
    }
