"""Task records and progress, shared by every service's API (async) and worker (sync).

Every read and write of a record is written once, in RecordCalls, as a Call (shared._redis):
the APIs run them on their async client (TaskRecords), Celery's pool processes on their sync
one (PlatformCelery.call).

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
import redis.asyncio as aioredis

from shared import _lua
from shared._auth import Principal
from shared._errors import NotFound
from shared._redis import Call, Lua, arun
from shared._status import REPLAYABLE_STATUSES, TERMINAL_STATUSES, TaskState

# Celery's result key. We never write it (our record is the result store); Celery writes the
# failures it alone sees (time limits, a lost pool process), and merge_status reads them.
CELERY_META_PREFIX = "celery-task-meta-"
_JSON_FIELDS = ("result", "error", "retry", "inputs")
SCRIPTS = {
    name: _lua.source(name, "records_lib")
    for name in ("record_create", "record_update", "record_begin", "record_progress")
}
_LUA = {name: Lua(source) for name, source in SCRIPTS.items()}
# Record fields a task's run never reads: left out of what begin answers.
_BEGIN_OMITS = ("inputs", "result")


REC_PREFIX = "t:rec:"


def rec_key(task_id: str) -> str:
    return REC_PREFIX + task_id


def prog_key(task_id: str) -> str:
    return f"t:prog:{task_id}"


def user_key(owner: str) -> str:
    return f"t:user:{quote(owner, safe='')}"


def events_channel(task_id: str) -> str:
    return f"t:ev:{task_id}"


# The current second as now_iso writes it: formatted once a second, not twice per task.
_second: tuple[int, str] = (-1, "")


def now_iso() -> str:
    """Now in UTC, to the millisecond: 2026-01-02T03:04:05.678Z."""
    global _second
    now = time.time()
    whole = int(now)
    second = _second
    if second[0] != whole:
        second = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{second[1]}.{int((now - whole) * 1000):03d}Z"


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


def _record(raw: Any) -> dict[str, Any] | None:
    return _decode(raw) if raw else None


def _flat_record(flat: Any) -> dict[str, Any] | None:
    """A record as a script answers HGETALL (a flat list): None when there is none."""
    return _decode(dict(zip(flat[::2], flat[1::2], strict=True))) if flat else None


def _written(reply: Any) -> bool:
    return int(reply) == 1


def _is_set(raw: Any) -> bool:
    return bool(raw == b"1")


def _last_progress(raw: Any) -> int:
    return int(raw) if raw else 0


def _celery_meta(raw: Any) -> dict[str, Any] | None:
    return orjson.loads(raw) if raw else None  # type: ignore[no-any-return]


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


class RecordCalls:
    """Every read and write of a task record, written once and with no I/O: each method answers
    the Call that does it (shared._redis), for the APIs' async client (TaskRecords) and the
    workers' sync one (PlatformCelery.call) alike."""

    def __init__(self, expires_seconds: int, failed_keep_seconds: int = 0) -> None:
        self.expires = expires_seconds
        self.failed_keep = failed_keep_seconds

    def get(self, task_id: str) -> Call[dict[str, Any] | None]:
        return Call(("HGETALL", rec_key(task_id)), _record)

    def exists(self, task_id: str) -> Call[bool]:
        return Call(("EXISTS", rec_key(task_id)), bool)

    def create_args(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record as a submission's script writes it (task_submit.lua)."""
        return create_args(record, self.expires)

    def create(self, record: dict[str, Any]) -> Call[Any]:
        """Write a record on its own (a submission writes it with its fair-queue entry)."""
        return Call((orjson.dumps(self.create_args(record)),), script=_LUA["record_create"])

    def begin(self, task_id: str, worker: str) -> Call[dict[str, Any] | None]:
        """Mark the task STARTED unless final or cancelled; the record as it was before, less
        what a run never reads (the submission's `inputs`, kept for a replay, may be a megabyte)."""
        started_at = now_iso()
        args = {
            "key": rec_key(task_id),
            "channel": events_channel(task_id),
            "started_at": started_at,
            "worker": worker,
            "omit": _BEGIN_OMITS,
            "event": _event(
                "status", task_id=task_id, status=TaskState.STARTED, started_at=started_at
            ).decode(),
        }
        return Call((orjson.dumps(args),), _flat_record, _LUA["record_begin"])

    def mark(self, task_id: str, status: str, *, count_attempt: bool = False, **fields: Any) -> Call[int]:
        """A status change unless the record is final: 1, 0 (final already) or -1 (no record)."""
        args = update_args(
            task_id, status, fields, count_attempt=count_attempt, keep_seconds=self.failed_keep
        )
        return Call((orjson.dumps(args),), int, _LUA["record_update"])

    def end_args(self, task_id: str, status: str, fields: dict[str, Any]) -> dict[str, Any]:
        """A final status as task_end.lua takes it (with the fair queue's end of the task)."""
        return update_args(task_id, status, fields, keep_seconds=self.failed_keep)

    def report(self, task_id: str, current: int, total: int, message: str | None, seq: int) -> Call[int]:
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
        return Call((orjson.dumps(args),), int, _LUA["record_progress"])

    def progress(self, task_id: str, current: int, total: int, message: str | None, seq: int) -> Call[bool]:
        """Record progress; False when not written (final, cancelled, or an older update)."""
        report = self.report(task_id, current, total, message, seq)
        return Call(report.args, _written, report.script)

    def progress_of(self, task_id: str) -> Call[dict[str, Any]]:
        return Call(("HGETALL", prog_key(task_id)), _decode)

    def last_progress(self, task_id: str) -> Call[int]:
        return Call(("HGET", prog_key(task_id), "current"), _last_progress)

    def request_cancel(self, task_id: str) -> Call[Any]:
        return Call(("HSET", rec_key(task_id), "cancel", "1"))

    def is_cancelled(self, task_id: str) -> Call[bool]:
        return Call(("HGET", rec_key(task_id), "cancel"), _is_set)

    def celery_meta(self, task_id: str) -> Call[dict[str, Any] | None]:
        """Celery's own result of the task, when it wrote one (see CELERY_META_PREFIX)."""
        return Call(("GET", CELERY_META_PREFIX + task_id), _celery_meta)


class TaskRecords:
    """The APIs' access: RecordCalls on the async client, and the reads made of several calls."""

    def __init__(self, client: aioredis.Redis, expires_seconds: int, failed_keep_seconds: int = 0) -> None:
        self.r = client
        self.calls = RecordCalls(expires_seconds, failed_keep_seconds)

    def create_args(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record as a submission's script writes it (task_submit.lua)."""
        return self.calls.create_args(record)

    async def create(self, record: dict[str, Any]) -> None:
        """Write a record on its own (a submission writes it with its fair-queue entry)."""
        await arun(self.r, self.calls.create(record))

    async def get(self, task_id: str) -> dict[str, Any] | None:
        return await arun(self.r, self.calls.get(task_id))

    async def exists(self, task_id: str) -> bool:
        return await arun(self.r, self.calls.exists(task_id))

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
            meta = await arun(self.r, self.calls.celery_meta(record["task_id"]))
        return merge_status(record, meta)

    async def progress(self, record: dict[str, Any]) -> dict[str, Any]:
        status = await self.status(record)
        prog = await arun(self.r, self.calls.progress_of(record["task_id"]))
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
        await arun(self.r, self.calls.request_cancel(task_id))

    async def mark(self, task_id: str, status: str, **fields: Any) -> int:
        return await arun(self.r, self.calls.mark(task_id, status, **fields))
