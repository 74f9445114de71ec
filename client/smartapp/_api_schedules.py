"""The endpoints of schedules: an endpoint run on a cron or every N seconds."""

from __future__ import annotations

from typing import Any

from smartapp._bind import endpoint
from smartapp._call import Call, model, nothing, present, seg
from smartapp._models import Schedule, ScheduleList


class SchedulesAPI:
    @endpoint
    def create_schedule(
        self,
        name: str,
        target: str,
        body: dict[str, Any] | None = None,
        *,
        cron: str | None = None,
        every_seconds: int | None = None,
        timezone: str | None = None,
        paused: bool = False,
    ) -> Call[Schedule]:
        """`POST /schedules/`: run `target` (an endpoint, e.g. `background-task`) with `body`,
        on `cron` (in `timezone`) or every `every_seconds`."""
        payload = {
            "name": name,
            "target": {"path": target, "body": body or {}},
            **present(cron=cron, every_seconds=every_seconds, timezone=timezone, paused=paused or None),
        }
        return Call("POST", "/schedules/", model(Schedule), payload)

    @endpoint
    def list_schedules(self) -> Call[list[Schedule]]:
        return Call("GET", "/schedules/", model(ScheduleList)).then(lambda page: page.schedules)

    @endpoint
    def get_schedule(self, schedule_id: str) -> Call[Schedule]:
        return Call("GET", f"/schedules/{seg(schedule_id)}", model(Schedule))

    @endpoint
    def update_schedule(self, /, schedule_id: str, **changes: Any) -> Call[Schedule]:
        """`PATCH /schedules/{id}`: e.g. `paused=True`, `cron=...`, `name=...`."""
        return Call("PATCH", f"/schedules/{seg(schedule_id)}", model(Schedule), changes)

    @endpoint
    def delete_schedule(self, schedule_id: str) -> Call[None]:
        return Call("DELETE", f"/schedules/{seg(schedule_id)}", nothing)
