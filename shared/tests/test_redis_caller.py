"""The workers' Caller against the real Redis: a call interrupted between sending and reading
(as a soft time limit can interrupt it) never hands its reply to the next call."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from shared import BaseServiceSettings
from shared._redis import Call, Caller


class Interrupted(BaseException):
    """Stands for SoftTimeLimitExceeded, which a signal raises wherever the task happens to be."""


def test_an_interrupted_call_leaves_no_reply_for_the_next(
    infra: Path, settings: BaseServiceSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    caller = Caller(client)
    try:
        assert caller(Call(("ECHO", "warm"))) == b"warm"  # the thread's connection is open
        parse = client.parse_response

        def interrupted(*args: object, **kwargs: object) -> object:
            raise Interrupted  # the request went out; its reply is left unread

        monkeypatch.setattr(client, "parse_response", interrupted)
        with pytest.raises(Interrupted):
            caller(Call(("ECHO", "first")))
        monkeypatch.setattr(client, "parse_response", parse)
        assert caller(Call(("ECHO", "second"))) == b"second"
        assert caller(Call(("ECHO", "third"))) == b"third"
    finally:
        client.close()
