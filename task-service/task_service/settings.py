from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared import BaseServiceSettings


class TaskSettings(BaseServiceSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: str = "task-service"
    port: int = 8001
    worker_metrics_port: int | None = 9101
    # Countdowns wait in Redis (the fair queue's delayed set), not in a worker; the cap keeps
    # the API's promise (README: countdown <= 900 s).
    max_countdown_seconds: int = 900
    max_data_bytes: int = 1_000_000
    # A long-running task hands itself over to a fresh delivery after this long, so no single
    # run nears the time limits however many steps it has.
    long_task_slice_seconds: int = 20 * 60
