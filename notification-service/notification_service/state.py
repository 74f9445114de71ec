"""Typed accessors for what create_app puts on app.state, for the routes."""

from __future__ import annotations

from typing import Generic, TypeVar

from fastapi import Request

from notification_service.devices import Devices
from notification_service.inbox import Inbox
from notification_service.ledger import Ledger
from notification_service.preferences import PreferenceStore
from notification_service.settings import NotificationSettings
from shared import Allowlist, app_state

T = TypeVar("T")


class _Slot(Generic[T]):
    """`slot(request)` is `request.app.state.<name>`, typed as `kind` (shared's app_state)."""

    def __init__(self, name: str, kind: type[T]) -> None:
        self.name = name
        self.kind = kind

    def __call__(self, request: Request) -> T:
        return app_state(request, self.name, self.kind)


settings = _Slot("settings", NotificationSettings)
ledger = _Slot("ledger", Ledger)
inbox = _Slot("inbox", Inbox)
prefs = _Slot("prefs", PreferenceStore)
devices = _Slot("devices", Devices)
allowlist = _Slot("allowlist", Allowlist)
