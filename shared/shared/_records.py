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

from shared import _lua
from shared._auth import Principal
from shared._errors import NotFound
from shared._status import REPLAYABLE_STATUSES, TERMINAL_STATUSES, TaskState

# Celery's result key. We never write it (our record is the result store); Celery writes the
# failures it alone sees (time limits, a lost pool process), and merge_status reads them.
CELERY_META_PREFIX = "celery-task-meta-"
_JSON_FIELDS = ("result", "error", "retry", "inputs")
SCRIPTS = {
    name: _lua.source(name, "records_lib")
    for name in ("record_create", "record_update", "record_begin", "record_progress")
}


REC_PREFIX = "t:rec:"


def rec_key(task_id: str) -> str:
    return REC_PREFIX + task_id


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


def _field(name: str, value: Any) -> str:
    if name in _JSON_FIELDS:
        return orjson.dumps(value).decode()
    return "" if value is None else str(value)


def update_args(
    task_id: str, status: str, fields: dict[str, Any], *, count_attempt: bool = False, keep_seconds: int = 0
) -> dict[str, Any]:
    """A status change, as record_update.lua (rec_update) takes it; the event carries the fields."""
    return {
        "key": rec_key(task_id),
        "channel": events_channel(task_id),
        "fields": {"status": str(status), **{k: _field(k, v) for k, v in fields.items()}},
        "count_attempt": count_attempt,
        "keep": keep_seconds if status in REPLAYABLE_STATUSES else 0,
        "event": _event("status", task_id=task_id, status=status, **fields).decode(),
    }


def create_args(record: dict[str, Any], expires_seconds: int) -> dict[str, Any]:
    """A new record, as rec_create (records_lib.lua) takes it: PENDING, no attempt yet."""
    fields = {k: _field(k, v) for k, v in record.items() if not (k in _JSON_FIELDS and v is None)}
    fields.setdefault("status", TaskState.PENDING)
    fields.setdefault("attempts", "0")
    now = time.time()
    return {
        "id": record["task_id"],
        "key": rec_key(record["task_id"]),
        "fields": fields,
        "user_key": user_key(record["owner"]),
        "created": repr(now),  # the score as a string: a Lua number would keep 14 digits
        "now": now,
        "expires": expires_seconds,
    }


# Statuses that carry an error: the failed ends and a failed attempt waiting for its retry.
_ERROR_STATUSES = REPLAYABLE_STATUSES | {TaskState.RETRY}


def merge_status(record: dict[str, Any], meta: dict[str, Any] | None) -> dict[str, Any]:
    """The public status: our record, corrected by Celery's result when it knows more."""
    status = record.get("status", TaskState.PENDING)
    result = record.get("result")
    error = record.get("error")
    finished_at = record.get("finished_at") or None
    if meta and status not in TERMINAL_STATUSES and meta.get("status") in TERMINAL_STATUSES:
        status = meta["status"]
        finished_at = finished_at or meta.get("date_done")
        if status == TaskState.SUCCESS:
            result = meta.get("result")
        elif status == TaskState.FAILURE:
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
        "result": result if status == TaskState.SUCCESS else None,
        "error": error if status in _ERROR_STATUSES else None,
        "attempts": int(record.get("attempts") or 0),
        "next_retry_at": (record.get("next_retry_at") or None) if status == TaskState.RETRY else None,
        "retry_of": record.get("retry_of") or None,
    }


def progress_view(task_id: str, status: str, prog: dict[str, Any]) -> dict[str, Any]:
    current = int(prog.get("current", 0))
    total = int(prog.get("total", 0))
    done = status == TaskState.SUCCESS
    if done and total:
        current = total
    percent = round(100.0 * current / total, 2) if total else (100.0 if done else 0.0)
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
        self._update = client.register_script(SCRIPTS["record_update"])
        self._create = client.register_script(SCRIPTS["record_create"])

    def create_args(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record as a submission's script writes it (task_submit.lua)."""
        return create_args(record, self.expires)

    async def create(self, record: dict[str, Any]) -> None:
        """Write a record on its own (a submission writes it with its fair-queue entry)."""
        await self._create(args=[orjson.dumps(self.create_args(record))])

    async def get(self, task_id: str) -> dict[str, Any] | None:
        raw = await self.r.hgetall(rec_key(task_id))
        return _decode(raw) if raw else None

    async def exists(self, task_id: str) -> bool:
        return bool(await self.r.exists(rec_key(task_id)))

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
        if record.get("status") not in TERMINAL_STATUSES:
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
        args = update_args(task_id, status, fields, keep_seconds=self.failed_keep)
        return int(await self._update(args=[orjson.dumps(args)]))


class SyncTaskRecords:
    """Sync access for Celery workers."""

    def __init__(self, client: redis.Redis, expires_seconds: int, failed_keep_seconds: int = 0) -> None:
        self.r = client
        self.expires = expires_seconds
        self.failed_keep = failed_keep_seconds
        self._update = client.register_script(SCRIPTS["record_update"])
        self._progress = client.register_script(SCRIPTS["record_progress"])
        self._begin = client.register_script(SCRIPTS["record_begin"])

    def get(self, task_id: str) -> dict[str, Any] | None:
        raw = self.r.hgetall(rec_key(task_id))
        return _decode(raw) if raw else None

    def begin(self, task_id: str, worker: str) -> dict[str, Any] | None:
        """Mark the task STARTED unless final or cancelled; the record as it was before."""
        started_at = now_iso()
        args = {
            "key": rec_key(task_id),
            "channel": events_channel(task_id),
            "started_at": started_at,
            "worker": worker,
            "event": _event(
                "status", task_id=task_id, status=TaskState.STARTED, started_at=started_at
            ).decode(),
        }
        flat = self._begin(args=[orjson.dumps(args)])
        if not flat:
            return None
        return _decode(dict(zip(flat[::2], flat[1::2], strict=True)))

    def end_args(self, task_id: str, status: str, fields: dict[str, Any]) -> dict[str, Any]:
        """A final status as task_end.lua takes it (with the fair queue's end of the task)."""
        return update_args(task_id, status, fields, keep_seconds=self.failed_keep)

    def is_cancelled(self, task_id: str) -> bool:
        return self.r.hget(rec_key(task_id), "cancel") == b"1"

    def mark(self, task_id: str, status: str, *, count_attempt: bool = False, **fields: Any) -> int:
        args = update_args(
            task_id, status, fields, count_attempt=count_attempt, keep_seconds=self.failed_keep
        )
        return int(self._update(args=[orjson.dumps(args)]))

    def progress(self, task_id: str, current: int, total: int, message: str | None, seq: int) -> bool:
        """Record progress; False when not written (final, cancelled, or an older update)."""
        return self.report(task_id, current, total, message, seq) == 1

    def report(self, task_id: str, current: int, total: int, message: str | None, seq: int) -> int:
        """Record progress: 1 written, 0 not (final, or older), -1 not: its owner cancelled it."""
        updated_at = now_iso()
        event = _event(
            "progress", task_id=task_id, current=current, total=total, message=message, updated_at=updated_at
        )
        args = {
            "prog_key": prog_key(task_id),
            "key": rec_key(task_id),
            "channel": events_channel(task_id),
            "seq": seq,
            "current": current,
            "total": total,
            "message": message or "",
            "updated_at": updated_at,
            "expires": self.expires,
            "event": event.decode(),
        }
        return int(self._progress(args=[orjson.dumps(args)]))

    def last_progress(self, task_id: str) -> int:
        raw = self.r.hget(prog_key(task_id), "current")
        return int(raw) if raw else 0
