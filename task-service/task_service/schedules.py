"""Schedules: when each one runs next, and where they are kept (Redis).

Layout: a hash per schedule (`t:sched:{id}`), a set of ids per owner, and one sorted set, the
due index, of every active schedule's next run (epoch milliseconds). Any number of schedulers
(scheduler.py) read the due index and claim a due tick with a compare-and-set of its next run
(lua/claim_schedule.lua): exactly one of them wins each tick. The claimer computes the next run
strictly after *now*, so ticks missed while no scheduler ran collapse into the one run it makes.

The claim also puts the run in flight, in the same step: `t:sched:inflight` (task id -> claim
time) and `t:sched:inflight:runs` (task id -> what it submits: schedule, due tick, owner,
target). The claimer removes it once the submission is done; a run left there past a lease
was claimed by a scheduler that stopped, and another takes it over (lua/take_over_run.lua).

Why not celery-redbeat: redbeat keeps beat's entries in Redis, but one beat at a time holds its
lock and the others wait for it to lapse (lock_timeout, 5 x max interval), entries run a Celery
task by name rather than a user's submission, and its cron is one time zone for the app. Per-user
schedules made through an API, with a time zone each, and active-active schedulers are what
this small index and one Lua script give.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import redis.asyncio as aioredis
from cronsim import CronSim, CronSimError
from redis.exceptions import WatchError

from shared import Unprocessable, now_iso, read_lua

DUE_KEY = "t:sched:due"
INFLIGHT_KEY = "t:sched:inflight"
INFLIGHT_RUNS_KEY = "t:sched:inflight:runs"
MIN_EVERY_SECONDS = 5
MAX_EVERY_SECONDS = 366 * 24 * 3600
# Ticks counted as missed, at most (a cron schedule's missed ticks are walked one by one).
MAX_SKIPPED_COUNTED = 1000

_CLAIM_LUA = read_lua("task_service", "claim_schedule.lua")
_TAKE_OVER_LUA = read_lua("task_service", "take_over_run.lua")


def schedule_key(schedule_id: str) -> str:
    return f"t:sched:{schedule_id}"


def owner_key(owner: str) -> str:
    return f"t:sched:user:{quote(owner, safe='')}"


def to_ms(ts: float) -> int:
    return int(ts * 1000)


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def check_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Unprocessable(
            f"timezone {name!r} is not a known IANA time zone (e.g. Europe/Paris, UTC).",
            code="invalid_timezone",
        ) from None


def check_cron(expr: str) -> None:
    if len(expr.split()) != 5:
        raise Unprocessable(
            "cron must have five fields: minute hour day-of-month month day-of-week.", code="invalid_cron"
        )
    try:
        next(CronSim(expr, datetime.now(UTC)))
    except (CronSimError, StopIteration) as exc:
        raise Unprocessable(f"cron {expr!r} is not valid: {exc}.", code="invalid_cron") from None


@dataclass(frozen=True, slots=True)
class Timing:
    """When a schedule runs: `cron` in `timezone`, or every `every_seconds` from `anchor_ms`."""

    cron: str | None
    timezone: str
    every_seconds: int | None
    anchor_ms: int

    def next_after(self, now_ms: int) -> int:
        """The first tick strictly after now_ms."""
        if self.every_seconds is not None:
            step = self.every_seconds * 1000
            k = max(0, (now_ms - self.anchor_ms) // step) + 1
            return self.anchor_ms + k * step
        assert self.cron is not None
        start = datetime.fromtimestamp(now_ms / 1000, ZoneInfo(self.timezone))
        # cronsim walks wall-clock time in the zone, DST gaps and repeats handled as cron does.
        return to_ms(next(CronSim(self.cron, start)).timestamp())

    def missed_between(self, due_ms: int, now_ms: int) -> int:
        """Ticks after `due_ms` and up to now_ms: missed, and not run (the due one runs)."""
        if now_ms <= due_ms:
            return 0
        if self.every_seconds is not None:
            return min(MAX_SKIPPED_COUNTED, (now_ms - due_ms) // (self.every_seconds * 1000))
        missed, tick = 0, due_ms
        while missed < MAX_SKIPPED_COUNTED:
            tick = self.next_after(tick)
            if tick > now_ms:
                break
            missed += 1
        return missed


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def timing_of(doc: dict[str, Any]) -> Timing:
    return Timing(doc["cron"], doc["timezone"], doc["every_seconds"], doc["anchor_ms"])


def decode(raw: dict[Any, Any]) -> dict[str, Any]:
    h = {_text(k): _text(v) for k, v in raw.items()}
    every = h.get("every_seconds") or ""
    return {
        "schedule_id": h["schedule_id"],
        "owner": h["owner"],
        "name": h["name"],
        "target": orjson.loads(h["target"]),
        "cron": h.get("cron") or None,
        "every_seconds": int(every) if every else None,
        "timezone": h.get("timezone") or "UTC",
        "paused": h.get("paused") == "1",
        "anchor_ms": int(h["anchor_ms"]),
        "next_run": int(h["next_run"]) if h.get("next_run") else None,
        "last_run_at": h.get("last_run_at") or None,
        "last_task_id": h.get("last_task_id") or None,
        "runs": int(h.get("runs") or 0),
        "created_at": h["created_at"],
        "updated_at": h.get("updated_at") or h["created_at"],
    }


def view(doc: dict[str, Any]) -> dict[str, Any]:
    """A schedule as the API shows it."""
    out = {k: v for k, v in doc.items() if k not in {"owner", "anchor_ms", "next_run"}}
    out["next_run_at"] = None if doc["paused"] or doc["next_run"] is None else iso_ms(doc["next_run"])
    return out


def encode(doc: dict[str, Any]) -> Mapping[Any, Any]:
    return {
        "schedule_id": doc["schedule_id"],
        "owner": doc["owner"],
        "name": doc["name"],
        "target": orjson.dumps(doc["target"]).decode(),
        "cron": doc["cron"] or "",
        "every_seconds": "" if doc["every_seconds"] is None else str(doc["every_seconds"]),
        "timezone": doc["timezone"],
        "paused": "1" if doc["paused"] else "0",
        "anchor_ms": str(doc["anchor_ms"]),
        "next_run": "" if doc["next_run"] is None else str(doc["next_run"]),
        "created_at": doc["created_at"],
        "updated_at": doc["updated_at"],
    }


@dataclass(frozen=True, slots=True)
class Run:
    """One claimed tick: what it submits, as it was when claimed (a recovery submits the same)."""

    schedule_id: str
    due_ms: int
    task_id: str
    owner: str
    target: dict[str, Any]

    @property
    def idempotency_key(self) -> str:
        """The same for every call of this tick to a target service: a repeat submits once."""
        return f"schedule:{self.schedule_id}:{self.due_ms}"

    def dumps(self) -> str:
        return orjson.dumps(
            {
                "schedule_id": self.schedule_id,
                "due_ms": self.due_ms,
                "task_id": self.task_id,
                "owner": self.owner,
                "target": self.target,
            }
        ).decode()

    @classmethod
    def loads(cls, raw: str | bytes) -> Run:
        d = orjson.loads(raw)
        return cls(d["schedule_id"], int(d["due_ms"]), d["task_id"], d["owner"], d["target"])


class TooManySchedules(Exception):
    pass


class Schedules:
    """The schedules in Redis: CRUD for the API, claim for the schedulers."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.r = client
        self._claim = client.register_script(_CLAIM_LUA)
        self._take_over = client.register_script(_TAKE_OVER_LUA)

    async def create(self, owner: str, fields: dict[str, Any], limit: int) -> dict[str, Any]:
        schedule_id = str(uuid.uuid4())
        now_ms = to_ms(time.time())
        doc = {
            "schedule_id": schedule_id,
            "owner": owner,
            "runs": 0,
            "last_run_at": None,
            "last_task_id": None,
            "created_at": now_iso(),
            "updated_at": now_iso(),
            "anchor_ms": now_ms,
            **fields,
        }
        doc["next_run"] = None if doc["paused"] else timing_of(doc).next_after(now_ms)
        # Claim a place first, in one transaction: each create sees its own place in line, so
        # racing creates never pass the limit together, and none is refused below it.
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.sadd(owner_key(owner), schedule_id)
            pipe.scard(owner_key(owner))
            _, count = await pipe.execute()
        if count > limit:
            await self.r.srem(owner_key(owner), schedule_id)
            raise TooManySchedules
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(schedule_key(schedule_id), mapping={**encode(doc), "runs": 0})
            if doc["next_run"] is not None:
                pipe.zadd(DUE_KEY, {schedule_id: doc["next_run"]})
            await pipe.execute()
        return doc

    async def get(self, schedule_id: str) -> dict[str, Any] | None:
        raw = await self.r.hgetall(schedule_key(schedule_id))
        return decode(raw) if raw else None

    async def get_for(self, owner: str, schedule_id: str) -> dict[str, Any] | None:
        doc = await self.get(schedule_id)
        return doc if doc is not None and doc["owner"] == owner else None

    async def list_for(self, owner: str) -> list[dict[str, Any]]:
        ids = sorted(_text(i) for i in await self.r.smembers(owner_key(owner)))
        async with self.r.pipeline(transaction=False) as pipe:
            for schedule_id in ids:
                pipe.hgetall(schedule_key(schedule_id))
            raws = await pipe.execute()
        docs = [decode(raw) for raw in raws if raw]
        found = [d for d in docs if d["owner"] == owner]
        return sorted(found, key=lambda d: d["created_at"], reverse=True)

    async def update(
        self, schedule_id: str, owner: str, changes: dict[str, Any], timing_changed: bool
    ) -> dict[str, Any] | None:
        """Apply `changes` (None: no such schedule of `owner`); a new timing or a resume counts
        its ticks from now.

        Read and written under WATCH: a scheduler's claim in between moves the next run, and a
        stale one written back would run that tick again; a delete in between must not be undone.
        """
        key = schedule_key(schedule_id)
        while True:
            async with self.r.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    raw = await pipe.hgetall(key)
                    doc = decode(raw) if raw else None
                    if doc is None or doc["owner"] != owner:
                        return None
                    new = {**doc, **changes, "updated_at": now_iso()}
                    now_ms = to_ms(time.time())
                    if timing_changed:
                        new["anchor_ms"] = now_ms
                    if new["paused"]:
                        new["next_run"] = None
                    elif timing_changed or doc["paused"]:
                        new["next_run"] = timing_of(new).next_after(now_ms)
                    pipe.multi()
                    # Only fields an edit owns: runs, last_run_at and last_task_id are the claimer's.
                    pipe.hset(key, mapping=encode(new))
                    if new["next_run"] is None:
                        pipe.zrem(DUE_KEY, schedule_id)
                    else:
                        pipe.zadd(DUE_KEY, {schedule_id: new["next_run"]})
                    await pipe.execute()
                    return new
                except WatchError:
                    continue  # a claim or another edit came first: read again

    async def delete(self, doc: dict[str, Any]) -> None:
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.zrem(DUE_KEY, doc["schedule_id"])
            pipe.delete(schedule_key(doc["schedule_id"]))
            pipe.srem(owner_key(doc["owner"]), doc["schedule_id"])
            await pipe.execute()

    # The scheduler's side.

    async def due(self, now_ms: int, limit: int = 100) -> list[tuple[str, int]]:
        got: list[Any] = await self.r.zrangebyscore(  # type: ignore[assignment]
            DUE_KEY, "-inf", now_ms, start=0, num=limit, withscores=True
        )
        return [(_text(member), int(score)) for member, score in got]

    async def overdue(self, now_ms: int, by_ms: int) -> int:
        return int(await self.r.zcount(DUE_KEY, "-inf", now_ms - by_ms))

    async def claim(
        self, doc: dict[str, Any], due_ms: int, next_ms: int, task_id: str, now_ms: int
    ) -> Run | None:
        """Claim the tick due at due_ms of the schedule `doc` (None: another scheduler did, or it
        changed); the run it starts is in flight from now_ms until finish()."""
        run = Run(doc["schedule_id"], due_ms, task_id, doc["owner"], doc["target"])
        args = {
            "id": run.schedule_id,
            "due": due_ms,
            "next": next_ms,
            "now": now_iso(),
            "task_id": task_id,
            "claimed_ms": now_ms,
            "run": run.dumps(),
        }
        keys = [DUE_KEY, schedule_key(run.schedule_id), INFLIGHT_KEY, INFLIGHT_RUNS_KEY]
        won = await self._claim(keys=keys, args=[orjson.dumps(args)])
        return run if won else None

    async def finish(self, task_id: str) -> None:
        """The run's submission is done (or failed for good): it is no longer in flight."""
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.zrem(INFLIGHT_KEY, task_id)
            pipe.hdel(INFLIGHT_RUNS_KEY, task_id)
            await pipe.execute()

    async def stale(self, claimed_before_ms: int, limit: int = 100) -> list[tuple[str, int]]:
        """Runs in flight since before claimed_before_ms: (task id, claim time)."""
        got: list[Any] = await self.r.zrangebyscore(  # type: ignore[assignment]
            INFLIGHT_KEY, "-inf", claimed_before_ms, start=0, num=limit, withscores=True
        )
        return [(_text(member), int(score)) for member, score in got]

    async def in_flight(self) -> set[str]:
        return {_text(m) for m in await self.r.zrange(INFLIGHT_KEY, 0, -1)}

    async def take_over(self, task_id: str, seen_ms: int, now_ms: int) -> Run | None:
        """Take over a stale run (None: it finished, or another scheduler took it first)."""
        args = {"task_id": task_id, "seen": seen_ms, "now": now_ms}
        raw = await self._take_over(keys=[INFLIGHT_KEY, INFLIGHT_RUNS_KEY], args=[orjson.dumps(args)])
        return None if raw is None else Run.loads(raw)
