"""task-service: generic and long-running tasks, every service's task status, schedules, the cache."""
