"""JSON logs carrying request_id and task_id."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from shared._context import request_id_var, task_id_var

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id_var.get()
        tid = getattr(record, "task_id", None) or task_id_var.get()
        if rid:
            out["request_id"] = rid
        if tid:
            out["task_id"] = tid
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key not in out and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route the root logger to stderr as JSON lines; idempotent."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO; URLs may carry user data.
    for noisy in ("httpx", "httpcore", "openai", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def configure_worker_logging(service: str, level: str = "INFO") -> None:
    """configure_logging, with Celery's per-task INFO line ("Task ... succeeded in ...: <result>")
    off: it writes the task's arguments and return value (user data, up to a kilobyte each) into
    the logs, and its repr of them was a tenth of a no-op task's CPU in its pool process.
    PlatformTask logs its own line per run, without them; failures still come from that logger
    (WARNING and above; a retry Celery schedules itself logged at INFO: on_retry records it)."""
    configure_logging(service, level)
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
    # And its "Task ... received" line, for the same reasons: the task's arguments (kwargsrepr)
    # in the logs, and 6% of the main process's CPU per no-op task. Read once, when the
    # consumer starts (after this signal), so it costs nothing per message.
    logging.getLogger("celery.worker.strategy").setLevel(logging.WARNING)
