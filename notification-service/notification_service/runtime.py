"""What a notification worker process keeps between tasks: its Redis and HTTP clients.

Made once per process (a prefork child must not reuse its parent's sockets); every task runs
its coroutine on the process's one loop, the shared worker runtime's.
"""

from __future__ import annotations

import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from notification_service.delivery import Deliverer
from notification_service.devices import Devices
from notification_service.inbox import Inbox
from notification_service.ledger import Ledger
from notification_service.preferences import PreferenceStore
from notification_service.settings import NotificationSettings
from notification_service.webpush import load_vapid_key
from shared import Allowlist, HostPacer, OutboundClient, Pacer, create_async_redis, worker_runtime

T = TypeVar("T")

# A host's pacing lease holds up to this many times notify_concurrency slots (see deliverer()).
LEASE_WAVES = 4


class Runtime:
    def __init__(self, settings: NotificationSettings) -> None:
        self.settings = settings
        self.redis = create_async_redis(settings)
        worker_runtime.on_shutdown(self.redis.aclose)
        self.ledger = Ledger(self.redis, settings.notify_retention_seconds)
        self.devices = Devices(self.redis, settings.notify_max_devices_per_user, settings.secret_key)
        self.inbox = Inbox(self.redis, settings.notify_retention_seconds, settings.notify_inbox_max_items)
        self.prefs = PreferenceStore(self.redis)
        self._deliverer: Deliverer | None = None

    @staticmethod
    def run(coro: Coroutine[Any, Any, T]) -> T:
        return worker_runtime.run(coro)

    async def deliverer(self) -> Deliverer:
        if self._deliverer is None:
            settings = self.settings
            vapid = await load_vapid_key(
                self.redis, settings.vapid_private_key, server_secret=settings.secret_key
            )
            http = OutboundClient(
                Allowlist.parse(settings.outbound_allowlist),
                timeout=settings.notify_http_timeout,
                connect_timeout=min(5.0, settings.notify_http_timeout),
                max_connections=settings.notify_concurrency,
                user_agent="smart-application-notifications/0.1",
            )
            worker_runtime.on_shutdown(http.aclose)
            # A lease no larger than the senders in flight is used up by one wave of them at a
            # fast pace, and the rest of the wave waits on Redis for the next (measured: 7 turns
            # in 10 waited, with leases of 64 and 64 senders); four waves' worth are not.
            pacer = HostPacer(
                Pacer(self.redis, "n:pace:"),
                settings.notify_max_per_host_per_second,
                max_wait_s=settings.notify_stuck_after_seconds / 4,
                max_lease=LEASE_WAVES * settings.notify_concurrency,
            )
            self._deliverer = Deliverer(settings, self.ledger, self.devices, http, vapid, pacer, self.prefs)
        return self._deliverer


_per_process: dict[int, Runtime] = {}


def runtime(settings: NotificationSettings) -> Runtime:
    """This process's Runtime, made after the fork: a child must not reuse its parent's sockets."""
    pid = os.getpid()
    if pid not in _per_process:
        _per_process.clear()
        _per_process[pid] = Runtime(settings)
    return _per_process[pid]
