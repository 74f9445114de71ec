"""Task records and progress, shared by every service's API (async) and worker (sync).

Layout (all under 't:' so the cache API, which only touches 'cache:', can never reach them):
  t:rec:{id}    hash: task_id owner task_type queue created_at status started_at finished_at
                      result error attempts callback_url cancel request_id
  t:prog:{id}   hash: seq current total message status updated_at
  t:user:{own}  zset of the owner's task ids scored by creation time
  t:ev:{id}     pub/sub channel of progress and final-status events
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
import redis
import redis.asyncio as aioredis

from shared._auth import Principal
from shared._errors import NotFound

TERMINAL = frozenset({"SUCCESS", "FAILURE", "REVOKED", "EXPIRED"})
STATUSES = ("PENDING", "STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED", "EXPIRED")
CELERY_META_PREFIX = "celery-task-meta-"
_JSON_FIELDS = ("result", "error", "retry", "inputs")
# Ends that can be replayed: their records (with their inputs) are kept FAILED_RETENTION_DAYS.
REPLAYABLE = frozenset({"FAILURE", "REVOKED", "EXPIRED"})


def rec_key(task_id: str) -> str:
    return f"t:rec:{task_id}"


def prog_key(task_id: str) -> str:
    return f"t:prog:{task_id}"


def user_key(owner: str) -> str:
    return f"t:user:{quote(owner, safe='')}"


def events_channel(task_id: str) -> str:
    return f"t:ev:{task_id}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Update fields unless the record is already final: a late STARTED or PROGRESS from a redelivered
# copy must never turn a finished task back into a running one. Publishes the new status.
_UPDATE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'SUCCESS' or st == 'FAILURE' or st == 'REVOKED' or st == 'EXPIRED' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
if ARGV[1] ~= '' then redis.call('HINCRBY', KEYS[1], 'attempts', 1) end
if ARGV[3] ~= '' then redis.call('EXPIRE', KEYS[1], ARGV[3], 'GT') end
redis.call('PUBLISH', KEYS[2], ARGV[2])
return 1
"""

# A worker picks the task up: one round trip answers the record as it was and, unless it is
# final or cancelled, marks it STARTED, counts the attempt and publishes the new status.
_BEGIN_LUA = """
local rec = redis.call('HGETALL', KEYS[1])
if #rec == 0 then return rec end
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'SUCCESS' or st == 'FAILURE' or st == 'REVOKED' or st == 'EXPIRED' then return rec end
if redis.call('HGET', KEYS[1], 'cancel') == '1' then return rec end
redis.call('HSET', KEYS[1], 'status', 'STARTED', 'started_at', ARGV[1], 'worker', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('PUBLISH', KEYS[2], ARGV[3])
return rec
"""

# A task succeeded: our record and Celery's result in one round trip. Celery's own store
# would read the result key, then write it: two more round trips on every task.
_SUCCEED_LUA = """
local st = redis.call('HGET', KEYS[1], 'status')
local final = st == 'SUCCESS' or st == 'FAILURE' or st == 'REVOKED' or st == 'EXPIRED'
if st and not final then
  redis.call('HSET', KEYS[1], 'status', 'SUCCESS', 'finished_at', ARGV[1], 'result', ARGV[2])
  redis.call('PUBLISH', KEYS[2], ARGV[5])
end
redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4])
redis.call('PUBLISH', KEYS[3], ARGV[3])
if final then return 0 end
return 1
"""

# Progress carries a sequence number: an older update never overwrites a newer one. Nothing is
# written or published once the task is final or its owner asked to cancel it: a step that was
# running when the cancel came must not move the progress the owner was told it stopped at.
_PROGRESS_LUA = """
local cur = redis.call('HGET', KEYS[1], 'seq')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
local st, cancel = unpack(redis.call('HMGET', KEYS[2], 'status', 'cancel'))
if st == 'SUCCESS' or st == 'FAILURE' or st == 'REVOKED' or st == 'EXPIRED' then return 0 end
if cancel == '1' then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'current', ARGV[2], 'total', ARGV[3],
           'message', ARGV[4], 'updated_at', ARGV[5], 'status', 'PROGRESS')
redis.call('EXPIRE', KEYS[1], ARGV[6])
if st == 'STARTED' or st == 'PENDING' or st == 'RETRY' then
  redis.call('HSET', KEYS[2], 'status', 'PROGRESS')
end
redis.call('PUBLISH', KEYS[3], ARGV[7])
return 1
"""


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _decode(raw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {_text(k): _text(v) for k, v in raw.items()}
    for field in _JSON_FIELDS:
        if field in out:
            out[field] = orjson.loads(out[field])
    return out


def _event(kind: str, **fields: Any) -> bytes:
    return orjson.dumps({"event": kind, **fields})


def _update_args(
    status: str, fields: dict[str, Any], count_attempt: bool, task_id: str, keep_seconds: int = 0
) -> list[Any]:
    flat: list[Any] = ["status", status]
    for k, v in fields.items():
        flat += [k, orjson.dumps(v) if k in _JSON_FIELDS else ("" if v is None else str(v))]
    event = _event("status", task_id=task_id, status=status, **{k: v for k, v in fields.items()})
    keep = str(keep_seconds) if keep_seconds and status in REPLAYABLE else ""
    return ["1" if count_attempt else "", event, keep, *flat]


def merge_status(record: dict[str, Any], meta: dict[str, Any] | None) -> dict[str, Any]:
    """The public status: our record, corrected by Celery's result when it knows more."""
    status = record.get("status", "PENDING")
    result = record.get("result")
    error = record.get("error")
    finished_at = record.get("finished_at") or None
    if meta and status not in TERMINAL and meta.get("status") in TERMINAL:
        status = meta["status"]
        finished_at = finished_at or meta.get("date_done")
        if status == "SUCCESS":
            result = meta.get("result")
        elif status == "FAILURE":
            res = meta.get("result") or {}
            # Celery keeps the exception's args as a list: ["boom"] reads "boom", as our record does.
            message = res.get("exc_message", "")
            if isinstance(message, list | tuple):
                message = " ".join(str(part) for part in message)
            error = {"type": res.get("exc_type", "Error"), "message": str(message)}
    return {
        "task_id": record["task_id"],
        "status": status,
        "task_type": record.get("task_type"),
        "queue": record.get("queue"),
        "created_at": record.get("created_at"),
        "started_at": record.get("started_at") or None,
        "finished_at": finished_at,
        "result": result if status == "SUCCESS" else None,
        "error": error if status in {"FAILURE", "REVOKED", "RETRY", "EXPIRED"} else None,
        "attempts": int(record.get("attempts") or 0),
        "next_retry_at": (record.get("next_retry_at") or None) if status == "RETRY" else None,
        "retry_of": record.get("retry_of") or None,
    }


def progress_view(task_id: str, status: str, prog: dict[str, Any]) -> dict[str, Any]:
    current = int(prog.get("current", 0))
    total = int(prog.get("total", 0))
    if status == "SUCCESS" and total:
        current = total
    percent = round(100.0 * current / total, 2) if total else (100.0 if status == "SUCCESS" else 0.0)
    return {
        "task_id": task_id,
        "status": status,
        "current": current,
        "total": total,
        "percent": percent,
        "message": prog.get("message") or None,
        "updated_at": prog.get("updated_at") or None,
    }


class TaskRecords:
    """Async access for the APIs."""

    def __init__(self, client: aioredis.Redis, expires_seconds: int, failed_keep_seconds: int = 0) -> None:
        self.r = client
        self.expires = expires_seconds
        self.failed_keep = failed_keep_seconds
        self._update = client.register_script(_UPDATE_LUA)

    async def create(self, record: dict[str, Any]) -> None:
        key = rec_key(record["task_id"])
        fields: dict[str, str] = {}
        for k, v in record.items():
            if k in _JSON_FIELDS:
                if v is not None:
                    fields[k] = orjson.dumps(v).decode()
            else:
                fields[k] = "" if v is None else str(v)
        fields.setdefault("status", "PENDING")
        fields.setdefault("attempts", "0")
        now = time.time()
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
            pipe.expire(key, self.expires)
            ukey = user_key(record["owner"])
            pipe.zadd(ukey, {record["task_id"]: now})
            pipe.zremrangebyscore(ukey, 0, now - self.expires)
            pipe.expire(ukey, self.expires)
            await pipe.execute()

    async def discard(self, task_id: str, owner: str) -> None:
        """Remove a record whose publish failed, so it is never reported PENDING forever."""
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(rec_key(task_id))
            pipe.zrem(user_key(owner), task_id)
            await pipe.execute()

    async def get(self, task_id: str) -> dict[str, Any] | None:
        raw = await self.r.hgetall(rec_key(task_id))
        return _decode(raw) if raw else None

    async def get_for(self, user: Principal, task_id: str) -> dict[str, Any]:
        """The record if the caller may see it; another user's task is as unknown as a missing one."""
        if len(task_id) > 100:
            raise NotFound("No such task.", code="task_not_found")
        record = await self.get(task_id)
        if record is None or (record.get("owner") != user.sub and not user.is_admin):
            raise NotFound("No such task.", code="task_not_found")
        return record

    async def status(self, record: dict[str, Any]) -> dict[str, Any]:
        meta = None
        if record.get("status") not in TERMINAL:
            raw = await self.r.get(CELERY_META_PREFIX + record["task_id"])
            meta = orjson.loads(raw) if raw else None
        return merge_status(record, meta)

    async def progress(self, record: dict[str, Any]) -> dict[str, Any]:
        status = await self.status(record)
        prog = _decode(await self.r.hgetall(prog_key(record["task_id"])))
        return progress_view(record["task_id"], status["status"], prog)

    async def list_for(self, owner: str, status: str | None, limit: int) -> list[dict[str, Any]]:
        ids = await self.r.zrevrange(user_key(owner), 0, (limit * 5 if status else limit) - 1)
        if not ids:
            return []
        async with self.r.pipeline(transaction=False) as pipe:
            for tid in ids:
                pipe.hgetall(rec_key(_text(tid)))
            rows = await pipe.execute()
        out = []
        for raw in rows:
            if not raw:
                continue
            view = merge_status(_decode(raw), None)
            if status and view["status"] != status:
                continue
            out.append(view)
            if len(out) >= limit:
                break
        return out

    async def scan_for(
        self,
        owner: str,
        *,
        since: float | None = None,
        until: float | None = None,
        before: tuple[float, str] | None = None,
        batch: int = 200,
    ) -> AsyncIterator[tuple[float, dict[str, Any]]]:
        """The owner's records newest first, as (created score, record), within [since, until].

        `before` (score, id) resumes after that entry: the cursor of GET /tasks/.
        """
        ukey = user_key(owner)
        hi: float | str = until if until is not None else "+inf"
        if before is not None:
            hi = min(before[0], until) if until is not None else before[0]
        lo: float | str = since if since is not None else "-inf"
        offset = 0
        while True:
            got: list[Any] = await self.r.zrevrangebyscore(
                ukey, hi, lo, start=offset, num=batch, withscores=True
            )
            rows: list[tuple[Any, float]] = [(pair[0], float(pair[1])) for pair in got]
            if not rows:
                return
            offset += len(rows)
            async with self.r.pipeline(transaction=False) as pipe:
                for tid, _ in rows:
                    pipe.hgetall(rec_key(_text(tid)))
                raws = await pipe.execute()
            for (tid, score), raw in zip(rows, raws, strict=True):
                if before is not None and (score, _text(tid)) >= before:
                    continue  # the entries at or above the cursor (same score: ordered by id)
                if raw:
                    yield float(score), _decode(raw)
            if len(rows) < batch:
                return

    async def request_cancel(self, task_id: str) -> None:
        await self.r.hset(rec_key(task_id), "cancel", "1")

    async def mark(self, task_id: str, status: str, **fields: Any) -> int:
        res = await self._update(
            keys=[rec_key(task_id), events_channel(task_id)],
            args=_update_args(status, fields, False, task_id, self.failed_keep),
        )
        return int(res)


class SyncTaskRecords:
    """Sync access for Celery workers."""

    def __init__(self, client: redis.Redis, expires_seconds: int, failed_keep_seconds: int = 0) -> None:
        self.r = client
        self.expires = expires_seconds
        self.failed_keep = failed_keep_seconds
        self._update = client.register_script(_UPDATE_LUA)
        self._progress = client.register_script(_PROGRESS_LUA)
        self._begin = client.register_script(_BEGIN_LUA)
        self._succeed = client.register_script(_SUCCEED_LUA)

    def get(self, task_id: str) -> dict[str, Any] | None:
        raw = self.r.hgetall(rec_key(task_id))
        return _decode(raw) if raw else None

    def begin(self, task_id: str, worker: str) -> dict[str, Any] | None:
        """Mark the task STARTED unless final or cancelled; the record as it was before."""
        started_at = now_iso()
        event = _event("status", task_id=task_id, status="STARTED", started_at=started_at)
        flat = self._begin(keys=[rec_key(task_id), events_channel(task_id)], args=[started_at, worker, event])
        if not flat:
            return None
        return _decode(dict(zip(flat[::2], flat[1::2], strict=True)))

    def succeed(self, task_id: str, result: Any, expires: int) -> bool:
        """Record SUCCESS and write Celery's result (its format, so AsyncResult reads it)."""
        finished_at = now_iso()
        meta = {
            "status": "SUCCESS",
            "result": result,
            "traceback": None,
            "children": [],
            "date_done": finished_at,
            "task_id": task_id,
        }
        event = _event("status", task_id=task_id, status="SUCCESS", finished_at=finished_at)
        res = self._succeed(
            keys=[rec_key(task_id), events_channel(task_id), CELERY_META_PREFIX + task_id],
            args=[finished_at, orjson.dumps(result), orjson.dumps(meta), expires, event],
        )
        return bool(res)

    def is_cancelled(self, task_id: str) -> bool:
        return self.r.hget(rec_key(task_id), "cancel") == b"1"

    def mark(self, task_id: str, status: str, *, count_attempt: bool = False, **fields: Any) -> int:
        res = self._update(
            keys=[rec_key(task_id), events_channel(task_id)],
            args=_update_args(status, fields, count_attempt, task_id, self.failed_keep),
        )
        return int(res)

    def progress(self, task_id: str, current: int, total: int, message: str | None, seq: int) -> bool:
        updated_at = now_iso()
        event = _event(
            "progress", task_id=task_id, current=current, total=total, message=message, updated_at=updated_at
        )
        res = self._progress(
            keys=[prog_key(task_id), rec_key(task_id), events_channel(task_id)],
            args=[seq, current, total, message or "", updated_at, self.expires, event],
        )
        return bool(res)

    def last_progress(self, task_id: str) -> int:
        raw = self.r.hget(prog_key(task_id), "current")
        return int(raw) if raw else 0
