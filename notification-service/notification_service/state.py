"""Typed accessors for what create_app puts on app.state, for the routes."""

from __future__ import annotations

from fastapi import Request

from notification_service.devices import Devices
from notification_service.inbox import Inbox
from notification_service.ledger import Ledger
from notification_service.preferences import PreferenceStore
from notification_service.settings import NotificationSettings
from shared import Allowlist


def settings(request: Request) -> NotificationSettings:
    settings: NotificationSettings = request.app.state.settings
    return settings


def ledger(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.ledger
    return ledger


def inbox(request: Request) -> Inbox:
    inbox: Inbox = request.app.state.inbox
    return inbox


def prefs(request: Request) -> PreferenceStore:
    prefs: PreferenceStore = request.app.state.prefs
    return prefs


def devices(request: Request) -> Devices:
    devices: Devices = request.app.state.devices
    return devices


def allowlist(request: Request) -> Allowlist:
    allowlist: Allowlist = request.app.state.allowlist
    return allowlist
