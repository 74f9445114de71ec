"""python -m notification_service: the notification-service API on PORT (default 8003)."""

from notification_service.settings import NotificationSettings
from shared import run_server

if __name__ == "__main__":
    run_server("notification_service.app:create_app", NotificationSettings())
