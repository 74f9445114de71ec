"""Fair queues: each queue's users are served in turn, and delayed work waits in Redis.

RabbitMQ serves a queue first come, first served, and a worker holds every message with an
ETA it has taken. So one user's backlog, or their countdowns, would stand in front of
everyone else's new tasks. Here a submitted task goes into Redis instead: into its owner's
own queue (highest priority first, then oldest), the owner into a round-robin ring of the
users with queued work, or, with a countdown, into a set of delayed tasks by due time. Only a
small window of messages (FAIR_WINDOW_PER_SLOT per live worker slot) is ever in the broker.
When a task finishes, its worker pops the next task in turn and publishes it; an API does the
same on submit while the window has room. A pass in each worker's main process, once a
second, keeps the worker's heartbeat (the window follows the live slots), moves due delayed
tasks into their owners' turn, re-publishes tasks popped but never confirmed published (their
publisher died in between), drops in-flight entries whose task ended unseen, and fills the
window. The task record stays the guard against running a task twice. The scripts are in
lua/fairq_*.lua (the key layout is in fairq_lib.lua); a submission (task_submit.lua) and a
task's end in its pool process (task_end.lua) write the task record in the same round trip. The workers' side (a task's end handed on, the
pass) is in _fairq_worker.py.
A publisher confirms its publishes along with its next call, or on their own within
CONFIRM_WITHIN seconds, so a busy worker spends no round trip on them.

Why not the library: Celery has no fairness between users and RabbitMQ none between
messages of one queue; Hatchet-style group round robin needs its own scheduler and database.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

import orjson
import redis
import redis.asyncio as aioredis

from shared import _lua
from shared._records import CELERY_META_PREFIX, REC_PREFIX, rec_key, user_key
from shared._redis import Call, Caller, Lua
from shared._settings import BaseServiceSettings
from shared._status import TERMINAL_STATUSES

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger("shared.fairq")

PASS_SECONDS = 1.0  # how often each worker's pass runs: the precision of a countdown
HEARTBEAT_TTL = 15.0  # a worker not heard from for this long no longer counts in the window
REPUBLISH_AFTER = 60.0  # popped and not confirmed published for this long: its publisher died
SWEEP_EVERY = 10  # passes between checks of in-flight tasks against their records
SWEEP_AFTER = 30.0  # in flight this long before the check looks at it
PROMOTE_MAX = 1000  # due delayed tasks moved per script call
# The window also holds what the workers get through in this long (a publish and its confirm,
# a pass): short tasks then never wait for a publish. It delays another user's task this much.
LATENCY_BUDGET = 0.1
POP_ON_SUBMIT = 1
POP_ON_COMPLETE = 8
POP_ON_PASS = 500
TOO_MANY_RETRY_AFTER = "30"
PRUNE_EVERY = 60  # seconds between rechecks of one user's unfinished set when at the limit
CONFIRM_WITHIN = 1.0  # seconds a confirm of a publish may wait for a call to go with
CONFIRM_POLL = 0.05  # seconds a worker's settler waits for the broker's confirms when idle

# Read once at import; each Redis client registers them once (EVALSHA afterwards).
SCRIPTS = {
    **{name: _lua.source(f"fairq_{name}", "fairq_lib") for name in ("complete", "abort", "pump", "retry")},
    **{name: _lua.source(f"task_{name}", "records_lib", "fairq_lib") for name in ("submit", "end")},
}

_LUA = {name: Lua(source) for name, source in SCRIPTS.items()}


def broker_namespace(broker_url: str) -> str:
    """The vhost: a fair queue fronts one broker queue, and a queue is named within its vhost."""
    path = urlsplit(broker_url).path
    return quote(unquote(path[1:]) if len(path) > 1 else "/", safe="")


@dataclass(frozen=True)
class FairKeys:
    prefix: str  # this queue's keys
    open: str  # the users' unfinished sets, across the vhost's queues

    @classmethod
    def of(cls, settings: BaseServiceSettings, queue: str) -> FairKeys:
        ns = broker_namespace(settings.broker_url)
        return cls(prefix=f"t:fq:{ns}:{queue}:", open=f"t:fq:{ns}:open:")


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer past 64 bits: the standard library writes any
        return json.dumps(value, separators=(",", ":")).encode()


def build_message(
    app: Celery,
    *,
    name: str,
    task_id: str,
    queue: str,
    kwargs: dict[str, Any],
    priority: int,
    kwargsrepr: str,
    request_id: str | None,
    time_limit: float | None = None,
    soft_time_limit: float | None = None,
) -> bytes:
    """The broker message, made once at submit and kept while the task waits its turn.

    Celery's own message (protocol 2): its headers and properties as JSON, a newline, then the
    body already serialized, so publishing it later is a bare publish (a third of send_task's CPU).
    """
    # ignore_result None, as send_task sends it: the task's own setting applies (False would
    # make the worker store every result itself, four more Redis round trips per task).
    m = app.amqp.as_task_v2(
        task_id,
        name,
        kwargs=kwargs,
        argsrepr="()",
        kwargsrepr=kwargsrepr,
        ignore_result=None,
        time_limit=time_limit,
        soft_time_limit=soft_time_limit,
    )
    meta = {
        "id": task_id,
        "queue": queue,
        "priority": priority,
        "headers": {**m.headers, "request_id": request_id},
        "properties": m.properties,
    }
    return _dumps(meta) + b"\n" + _dumps(m.body)


def _split(raw: bytes | str) -> tuple[dict[str, Any], bytes]:
    data = raw.encode() if isinstance(raw, str) else raw
    meta, body = data.split(b"\n", 1)
    return orjson.loads(meta), body


def message_id(raw: bytes | str) -> str:
    return str(_split(raw)[0]["id"])


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass(frozen=True)
class Submitted:
    status: str  # queued | delayed | too_many | exists
    publish: list[bytes]


class AsyncFairQueue:
    """The APIs' side: submit, confirm a publish, or take a submission back."""

    def __init__(self, client: aioredis.Redis, settings: BaseServiceSettings, queue: str) -> None:
        self.r = client
        self.keys = FairKeys.of(settings, queue)
        self.limit = settings.max_queued_tasks_per_user
        self.keep = settings.result_expires_seconds
        self._submit = client.register_script(SCRIPTS["submit"])
        self._abort = client.register_script(SCRIPTS["abort"])

    async def submit(
        self,
        *,
        task_id: str,
        owner: str,
        record: dict[str, Any],
        priority: int,
        message: bytes,
        countdown: float | None,
        deadline: float | None = None,
    ) -> Submitted:
        """Write the record (TaskRecords.create_args) and queue the task; nothing when too_many."""
        now = time.time()
        args = {
            "record": record,
            "prefix": self.keys.prefix,
            "open": self.keys.open,
            "id": task_id,
            "user": quote(owner, safe=""),
            "priority": priority,
            "msg": message.decode(),
            "now": now,
            "due": now + countdown if countdown else 0,
            "limit": self.limit,
            "keep": self.keep,
            "max_pop": POP_ON_SUBMIT,
            "deadline": deadline or 0,
            "confirm": [],
        }
        out = await self._submit(args=[orjson.dumps(args)])
        return Submitted(_text(out[0]), list(out[1:]))

    async def confirm(self, ids: list[str]) -> None:
        if ids:
            await self.r.zrem(self.keys.prefix + "claimed", *ids)

    async def abort(self, task_id: str, owner: str, popped: list[str]) -> None:
        """Take the task (its record too) back out, and put what was popped back in turn."""
        args = {
            "prefix": self.keys.prefix,
            "open": self.keys.open,
            "id": task_id,
            "popped": popped,
            "rec_key": rec_key(task_id),
            "user_key": user_key(owner),
        }
        await self._abort(args=[orjson.dumps(args)])

    async def is_open(self, owner: str, task_id: str) -> bool:
        """Whether the task is among its owner's unfinished ones (submitted, not finished)."""
        return await self.r.zscore(self.keys.open + quote(owner, safe=""), task_id) is not None

    async def prune_open(self, owner: str) -> int:
        """Drop finished tasks from the owner's unfinished set (a finish no worker reported).

        At most once a minute per user: it reads up to MAX_QUEUED_TASKS_PER_USER records.
        """
        user = quote(owner, safe="")
        if not await self.r.set(f"{self.keys.open}{user}:pruned", "1", nx=True, ex=PRUNE_EVERY):
            return 0
        okey = self.keys.open + user
        ids = [_text(i) for i in await self.r.zrange(okey, 0, -1)]
        gone: list[str] = []
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            async with self.r.pipeline(transaction=False) as pipe:
                for tid in chunk:
                    pipe.hget(rec_key(tid), "status")
                statuses = await pipe.execute()
            gone += [
                tid
                for tid, st in zip(chunk, statuses, strict=True)
                if st is None or _text(st) in TERMINAL_STATUSES
            ]
        if gone:
            await self.r.zrem(okey, *gone)
        return len(gone)


class FairQueue:
    """The workers' side: a task left the window, the periodic pass."""

    def __init__(
        self, client: redis.Redis, settings: BaseServiceSettings, queue: str, caller: Caller | None = None
    ) -> None:
        self.r = client
        # The scripts run on the caller's connections (a task's end is on every task's path).
        self._call = caller or Caller(client)
        self.keys = FairKeys.of(settings, queue)
        self.per_slot = settings.fair_window_per_slot
        self.keep = settings.result_expires_seconds
        # Publishes not yet confirmed (ids), and when the oldest of them was made.
        self._unconfirmed: list[str] = []
        self._unconfirmed_since = 0.0
        self._lock = threading.Lock()

    def confirm_later(self, ids: list[str]) -> None:
        """Publishes made: confirmed with this process's next call, or by flush_confirms."""
        with self._lock:
            if not self._unconfirmed:
                self._unconfirmed_since = time.monotonic()
            self._unconfirmed += ids

    def _take_unconfirmed(self) -> list[str]:
        with self._lock:
            ids, self._unconfirmed = self._unconfirmed, []
        return ids

    def _script(self, name: str, args: dict[str, Any]) -> Any:
        return self._call(Call((orjson.dumps(args),), script=_LUA[name]))

    def _call_confirming(self, name: str, args: dict[str, Any]) -> Any:
        args["confirm"] = ids = self._take_unconfirmed()
        try:
            return self._script(name, args)
        except BaseException:
            if ids:
                self.confirm_later(ids)  # not sent: they go with the next call
            raise

    def flush_confirms(self, older_than: float = CONFIRM_WITHIN) -> None:
        """Confirm on their own the publishes that waited this long for a call to go with."""
        with self._lock:
            due = bool(self._unconfirmed) and time.monotonic() - self._unconfirmed_since >= older_than
        if due:
            ids = self._take_unconfirmed()
            try:
                self.confirm(ids)
            except BaseException:
                self.confirm_later(ids)
                raise

    def end(self, task_id: str, record: dict[str, Any]) -> tuple[int, list[bytes]]:
        """A task ended here: its final record and its end in the fair queue, in one round trip.

        task_end.lua; the answer is the record update's (1, or 0 when the record was final
        already, -1 when there is none) and the messages popped to publish.
        """
        args: dict[str, Any] = {
            "id": task_id,
            "record": record,
            "prefix": self.keys.prefix,
            "open": self.keys.open,
            "now": time.time(),
            "max_pop": POP_ON_COMPLETE,
        }
        out = list(self._call_confirming("end", args))
        return int(out[0]), out[1:]

    def retry_later(self, task_id: str, due: float) -> bool:
        """Put a failed task's message back to wait until `due` (epoch seconds); False if gone."""
        args = {"prefix": self.keys.prefix, "id": task_id, "due": due, "keep": self.keep}
        return bool(self._script("retry", args))

    def complete(self, ids: list[str], *, finished: bool, max_pop: int = POP_ON_COMPLETE) -> list[bytes]:
        args = {
            "prefix": self.keys.prefix,
            "open": self.keys.open,
            "ids": ids,
            "finished": finished,
            "now": time.time(),
            "max_pop": max_pop,
        }
        return list(self._call_confirming("complete", args))

    def confirm(self, ids: list[str]) -> None:
        if ids:
            self.r.zrem(self.keys.prefix + "claimed", *ids)

    def pump(self, node: str, slots: int, *, leave: bool = False) -> tuple[dict[str, Any], list[bytes]]:
        now = time.time()
        args = {
            "prefix": self.keys.prefix,
            "open": self.keys.open,
            "rec_prefix": REC_PREFIX,
            "node": node,
            "slots": slots,
            "per_slot": self.per_slot,
            "latency": LATENCY_BUDGET,
            "ttl": HEARTBEAT_TTL,
            "leave": leave,
            "now": now,
            "promote_max": PROMOTE_MAX,
            "reclaim_before": now - REPUBLISH_AFTER,
            "max_pop": POP_ON_PASS,
        }
        out = self._script("pump", args)
        return orjson.loads(out[0]), list(out[1:])

    def ended_in_flight(self, older_than: float = SWEEP_AFTER) -> list[str]:
        """In-flight tasks whose record (or Celery's result) is final, or gone."""
        ids = [
            _text(i)
            for i in self.r.zrangebyscore(self.keys.prefix + "inflight", "-inf", time.time() - older_than)
        ]
        if not ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for tid in ids:
            pipe.hget(rec_key(tid), "status")
            pipe.get(CELERY_META_PREFIX + tid)
        res = pipe.execute()
        ended = []
        for i, tid in enumerate(ids):
            status, meta = res[2 * i], res[2 * i + 1]
            meta_status = orjson.loads(meta).get("status") if meta else None
            if status is None or _text(status) in TERMINAL_STATUSES or meta_status in TERMINAL_STATUSES:
                ended.append(tid)
        return ended
