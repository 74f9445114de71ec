"""Each user's notification preferences: channels switched on or off, and quiet hours.

Stored as one JSON string per user, `n:pref:{user}`; a user without one gets the defaults
(every channel on, no quiet hours). Quiet hours are wall-clock times in the user's own IANA
zone, so the window follows daylight saving time: zoneinfo turns "22:00 in Europe/Paris"
into the right instant on each date, and a window may span midnight.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from redis.asyncio import Redis

from notification_service.ledger_keys import user_key

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_ZONES: frozenset[str] | None = None


pref_key = partial(user_key, "n:pref")


def _zones() -> frozenset[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones())
    return _ZONES


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: str = Field(description="Local time quiet hours begin, HH:MM (24 h).", examples=["22:00"])
    end: str = Field(
        description="Local time they end, HH:MM; before `start` spans midnight.", examples=["07:00"]
    )
    timezone: str = Field(max_length=64, description="An IANA time zone.", examples=["Europe/Paris"])

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("must be HH:MM, 00:00 to 23:59")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        # Only names of the tz database: never a path (ZoneInfo reads files by key).
        if value not in _zones():
            raise ValueError("must be an IANA time zone, e.g. Europe/Paris")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone, e.g. Europe/Paris") from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


class Channels(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webpush: bool = True
    webhook: bool = True


class Preferences(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channels: Channels = Field(default_factory=Channels)
    quiet_hours: QuietHours | None = Field(
        default=None, description="While they last, deliveries wait (status deferred); null: none."
    )

    def allows(self, channel: str) -> bool:
        return bool(getattr(self.channels, channel, True))


def _at(hhmm: str) -> time:
    hour, minute = hhmm.split(":")
    return time(int(hour), int(minute))


def quiet_until(quiet: QuietHours | None, now: datetime) -> datetime | None:
    """When the quiet hours around `now` end (an aware UTC datetime), or None outside them."""
    if quiet is None:
        return None
    zone = ZoneInfo(quiet.timezone)
    local = now.astimezone(zone)
    start, end, wall = _at(quiet.start), _at(quiet.end), local.time().replace(tzinfo=None)
    inside = start <= wall < end if start < end else (wall >= start or wall < end)
    if not inside:
        return None
    # The next `end` on the local calendar: today's when still ahead, else tomorrow's. Built
    # from the wall clock and the zone, so a DST change in between is accounted for.
    day = local.date() if wall < end else local.date() + timedelta(days=1)
    ends = datetime.combine(day, end, tzinfo=zone).astimezone(UTC)
    return ends if ends > now else now


class PreferenceStore:
    def __init__(self, client: Redis) -> None:
        self.r = client

    async def get(self, user: str) -> Preferences:
        raw = await self.r.get(pref_key(user))
        return Preferences.model_validate(orjson.loads(raw)) if raw else Preferences()

    async def get_many(self, users: Sequence[str]) -> dict[str, Preferences]:
        if not users:
            return {}
        raws = await self.r.mget([pref_key(u) for u in users])
        return {
            u: Preferences.model_validate(orjson.loads(raw)) if raw else Preferences()
            for u, raw in zip(users, raws, strict=True)
        }

    async def put(self, user: str, prefs: Preferences) -> None:
        await self.r.set(pref_key(user), orjson.dumps(prefs.model_dump(mode="json")))

    @staticmethod
    def view(prefs: Preferences) -> dict[str, Any]:
        return prefs.model_dump(mode="json")
