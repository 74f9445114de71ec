"""Fixtures of the shared library's tests: what a worker's pool process holds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import pytest
import redis

from shared._records import RecordCalls
from shared._redis import Call, run

T = TypeVar("T")


@dataclass
class PoolProcess:
    """A pool process's sync Redis client and the records' calls made on it (PlatformCelery.call)."""

    r: redis.Redis
    records: RecordCalls

    def call(self, call: Call[T]) -> T:
        return run(self.r, call)


@pytest.fixture
def worker() -> Iterator[PoolProcess]:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    yield PoolProcess(client, RecordCalls(60))
    client.close()
