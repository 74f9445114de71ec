"""The notification record: what its sender asked for, stored once as JSON and never changed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Notification:
    notification_id: str
    sender: str
    user_id: str
    title: str
    message: str
    data: dict[str, Any]
    ttl: int
    urgency: str
    topic: str
    created_at: str
    created_ts: float
    batch_id: str | None = None
    task_id: str | None = None
    # When it is to go out, for a scheduled one (epoch seconds); its TTL counts from then.
    send_at: float | None = None
    # "critical" goes out during the recipient's quiet hours too.
    priority: str = "normal"

    @property
    def expires_ts(self) -> float:
        return (self.send_at or self.created_ts) + self.ttl

    def to_json(self) -> bytes:
        return orjson.dumps(self)  # orjson writes a dataclass as an object of its fields

    @classmethod
    def from_json(cls, raw: bytes | str) -> Notification:
        d = orjson.loads(raw)
        return cls(**d)
