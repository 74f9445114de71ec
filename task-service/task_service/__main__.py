"""python -m task_service: the task-service API on PORT (default 8001)."""

from shared import run_server
from task_service.settings import TaskSettings

if __name__ == "__main__":
    run_server("task_service.app:create_app", TaskSettings())
