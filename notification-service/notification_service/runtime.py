"""What a worker process keeps between tasks: one event loop and the clients bound to it.

A prefork child must not reuse its parent's sockets, so everything is made lazily, once
per process id, and every task runs its coroutine on that process's loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from notification_service.delivery import Deliverer
from notification_service.devices import Devices
from notification_service.inbox import Inbox
from notification_service.ledger import Ledger
from notification_service.outbound import DeliveryClient
from notification_service.preferences import PreferenceStore
from notification_service.settings import NotificationSettings
from notification_service.webpush import load_vapid_key
from shared import HostPacer, Pacer, create_async_redis
from shared._outbound import Allowlist

T = TypeVar("T")


class Runtime:
    def __init__(self, settings: NotificationSettings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.redis = create_async_redis(settings)
        self.ledger = Ledger(self.redis, settings.notify_retention_seconds)
        self.devices = Devices(self.redis, settings.notify_max_devices_per_user, settings.secret_key)
        self.inbox = Inbox(self.redis, settings.notify_retention_seconds, settings.notify_inbox_max_items)
        self.prefs = PreferenceStore(self.redis)
        self._deliverer: Deliverer | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    async def deliverer(self) -> Deliverer:
        if self._deliverer is None:
            settings = self.settings
            vapid = await load_vapid_key(
                self.redis, settings.vapid_private_key, server_secret=settings.secret_key
            )
            http = DeliveryClient(
                Allowlist.parse(settings.outbound_allowlist),
                timeout=settings.notify_http_timeout,
                connect_timeout=min(5.0, settings.notify_http_timeout),
                max_connections=settings.notify_concurrency,
                user_agent="smart-application-notifications/0.1",
            )
            pacer = HostPacer(
                Pacer(self.redis, "n:pace:"),
                settings.notify_max_per_host_per_second,
                max_wait_s=settings.notify_stuck_after_seconds / 4,
            )
            self._deliverer = Deliverer(settings, self.ledger, self.devices, http, vapid, pacer, self.prefs)
        return self._deliverer


_runtime: Runtime | None = None
_pid: int | None = None


def runtime(settings: NotificationSettings) -> Runtime:
    global _runtime, _pid
    if _runtime is None or _pid != os.getpid():
        _runtime = Runtime(settings)
        _pid = os.getpid()
    return _runtime
