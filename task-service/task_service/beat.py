"""The one beat for the platform: it schedules periodic tasks of every queue by name.

Run a single instance: celery -A task_service.beat beat
Beat only publishes messages, so it needs no service's task code, only names and queues.

Each entry reaches its queue through the app's router (`task_routes`, by the service prefix
of the task's name), over queues declared exactly as the workers declare them; an entry that
routes nowhere stops beat at start-up instead of failing every minute.

Health: beat serves no port, so it keeps its state in a file beside its schedule
(`<schedule>.health`): whether its start-up check (broker reached, every routed queue
declared) and then its last send succeeded, refreshed on every tick. Check it with
`python -m task_service.beat_health /tmp/celerybeat-schedule` (exit 0 healthy, 1 not).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from celery import Celery, signals
from celery.beat import PersistentScheduler, ScheduleEntry

from shared import QueueName, configure_logging, make_celery, make_queue
from task_service.beat_health import health_path, write_health
from task_service.settings import TaskSettings

log = logging.getLogger("task_service.beat")

# A task's name starts with its service's prefix; the prefix says which queue its worker reads.
SERVICE_QUEUES: dict[str, QueueName] = {
    "tasks": QueueName.DEFAULT,
    "scraping": QueueName.SCRAPING,
    "notifications": QueueName.NOTIFICATIONS,
}
# beat ticks at least this often (seconds), so a live beat refreshes its health file.
MAX_LOOP_INTERVAL = 30.0

settings = TaskSettings()
app = make_celery("beat", QueueName.DEFAULT, settings)
app.conf.update(
    # beat publishes to every service's queue, so it declares them all (with the workers'
    # arguments: a queue declared twice with different arguments is a channel error).
    task_queues=[make_queue(queue) for queue in QueueName],
    task_routes={f"{prefix}.*": {"queue": queue.value} for prefix, queue in SERVICE_QUEUES.items()},
    beat_scheduler="task_service.beat:CheckedScheduler",
    beat_max_loop_interval=MAX_LOOP_INTERVAL,
)
app.conf.beat_schedule = {
    "notifications-sweep-stuck": {
        "task": "notifications.sweep_stuck",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "notifications-expire-records": {
        "task": "notifications.expire_records",
        "schedule": 3600.0,
        "options": {"expires": 3000},
    },
}


def entry_queue(task: str, options: dict[str, Any] | None = None, celery: Celery | None = None) -> str:
    """The queue a `task` message goes to, as the app's router decides; raises if none."""
    celery = celery or app
    if task.split(".", 1)[0] not in SERVICE_QUEUES:
        # Without a route the message would land on the default queue, whose worker lacks the task.
        raise LookupError(f"beat entry for {task}: no service prefix routes it ({', '.join(SERVICE_QUEUES)})")
    routed = celery.amqp.router.route(dict(options or {}), task)
    queue = routed.get("queue")
    name = getattr(queue, "name", queue)
    if name not in celery.amqp.queues:
        raise LookupError(f"beat entry for {task} routes to undeclared queue {name!r}")
    return str(name)


class CheckedScheduler(PersistentScheduler):  # type: ignore[misc]
    """Celery's persistent scheduler that checks its routes at start and records its health."""

    _ok: bool = False
    _error: str | None = "not checked yet"
    _checked: bool = False

    def setup_schedule(self) -> None:
        super().setup_schedule()
        for name, entry in self.schedule.items():
            if name.startswith("celery."):
                continue  # Celery's own housekeeping, run in place
            log.info(
                "beat entry %s (%s) goes to queue %s",
                name,
                entry.task,
                entry_queue(entry.task, entry.options, self.app),
            )

    @property
    def health_file(self) -> Path:
        return health_path(str(self.schedule_filename))

    def _record(self, ok: bool, error: str | None) -> None:
        self._ok, self._error = ok, error
        try:
            write_health(self.health_file, ok, error)
        except OSError:
            log.exception("could not write beat's health file %s", self.health_file)

    def _check_broker(self) -> None:
        """Reach the broker and declare every queue an entry routes to (what a send needs)."""
        try:
            channel = self.producer.connection.default_channel
            entries = [e for name, e in self.schedule.items() if not name.startswith("celery.")]
            for queue in sorted({entry_queue(e.task, e.options, self.app) for e in entries}):
                self.app.amqp.queues[queue](channel).declare()
        except Exception as exc:
            log.exception("beat cannot reach its queues")
            self._record(False, f"{type(exc).__name__}: {exc}")
            return
        self._checked = True
        self._record(True, None)

    def apply_async(
        self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        try:
            result = super().apply_async(entry, producer, advance, **kwargs)
        except Exception as exc:
            self._record(False, f"{entry.name}: {exc}")
            raise
        self._record(True, None)
        return result

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self._checked:
            self._check_broker()
        delay: float = super().tick(*args, **kwargs)
        self._record(self._ok, self._error)  # a heartbeat: this beat still ticks
        return delay


@signals.setup_logging.connect(weak=False)
def _json_logs(**_: Any) -> None:
    configure_logging("beat", settings.log_level)
