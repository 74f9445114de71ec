"""The worker survives a dead pool process's None fd on reconnect (see shared/_pool_guard.py)."""

from __future__ import annotations

import os

import pytest
from celery.concurrency import asynpool
from kombu.asynchronous import Hub
from kombu.utils.compat import fileno

from shared._pool_guard import install_pool_fd_guard


def test_kombu_raises_valueerror_for_a_none_fd() -> None:
    # The half of the mismatch the guard exists for: Celery's own handler does not catch this.
    with pytest.raises(ValueError, match="file descriptor is None"):
        fileno(None)


def test_a_none_fd_is_dropped_and_the_live_ones_registered() -> None:
    install_pool_fd_guard()
    guarded = asynpool.iterate_file_descriptors_safely
    install_pool_fd_guard()
    assert asynpool.iterate_file_descriptors_safely is guarded  # one wrapper, however often installed
    hub = Hub()
    r, w = os.pipe()
    try:
        fds: list[int | None] = [None, r]
        asynpool.iterate_file_descriptors_safely(list(fds), fds, hub.add_reader, lambda: None)
        assert fds == [r]  # the stale fd left the pool's list, as an OSError would have made it
        assert r in hub.readers
    finally:
        hub.close()
        os.close(r)
        os.close(w)
