"""The routing table: which service answers which path under the public prefix.

The table is the one place that knows the services' path segments. The gateway passes the
path through unchanged (with or without its trailing slash), so a service's own routes decide
what exists below a segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.settings import GatewaySettings
from shared import API_PREFIX


class Service(StrEnum):
    TASKS = "task-service"
    SCRAPING = "scraping-service"
    NOTIFICATIONS = "notification-service"


@dataclass(frozen=True, slots=True)
class RouteLabel:
    """What metrics see as the route: a template, never the raw path (bounded cardinality)."""

    path: str


@dataclass(frozen=True, slots=True)
class RouteSpec:
    segment: str
    service: Service
    # The scope the gateway checks before proxying; None leaves the decision to the service
    # (e.g. task-status serves the tasks of every service, so no single scope fits).
    scope: str | None = None
    large_body: bool = False


# First path segment under API_PREFIX -> service. Segments not listed go to task-service.
ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("background-task", Service.TASKS, scope="tasks"),
    RouteSpec("long-running-task", Service.TASKS, scope="tasks"),
    RouteSpec("task-status", Service.TASKS),
    RouteSpec("task-progress", Service.TASKS),
    RouteSpec("task-cancel", Service.TASKS),
    RouteSpec("task-retry", Service.TASKS, scope="tasks"),
    RouteSpec("tasks", Service.TASKS),
    RouteSpec("task-events", Service.TASKS),
    RouteSpec("cache", Service.TASKS, scope="cache"),
    RouteSpec("cache-batch", Service.TASKS, scope="cache"),
    RouteSpec("task-types", Service.TASKS, scope="tasks"),
    RouteSpec("callback-secret", Service.TASKS, scope="tasks"),
    RouteSpec("schedules", Service.TASKS, scope="tasks"),
    RouteSpec("background-scraping", Service.SCRAPING, scope="scrape"),
    RouteSpec("devices", Service.NOTIFICATIONS),
    RouteSpec("webpush", Service.NOTIFICATIONS),
    RouteSpec("send-notification", Service.NOTIFICATIONS),
    RouteSpec("batch-notifications", Service.NOTIFICATIONS, scope="notify:send", large_body=True),
    RouteSpec("notification-status", Service.NOTIFICATIONS),
    # The service checks who may: the sender cancels; each user reads and sets their own.
    RouteSpec("notification-cancel", Service.NOTIFICATIONS),
    RouteSpec("notification-preferences", Service.NOTIFICATIONS),
    RouteSpec("batch-status", Service.NOTIFICATIONS),
    RouteSpec("inbox", Service.NOTIFICATIONS),
)
DEFAULT_SERVICE = Service.TASKS

# Event streams: held open for minutes, so they are counted per user and travel on upstream
# connections of their own (proxy.py). Segment -> the sub-path that streams ("" for any).
STREAM_PATHS = {"task-events": "", "inbox": "stream"}

# Paths a client may call without a token (GET only): the VAPID public key a browser needs
# before it can subscribe. Compared without a trailing slash.
PUBLIC_PATHS = frozenset({f"{API_PREFIX}/webpush/vapid-public-key"})


@dataclass(frozen=True, slots=True)
class Route:
    """A routing table entry resolved against the settings."""

    service: Service
    base_url: str
    scope: str | None
    max_body: int
    label: RouteLabel  # the segment itself, e.g. /smart_application/tasks/cache/
    sub_label: RouteLabel  # anything below it, e.g. /smart_application/tasks/cache/{path}


class RoutingTable:
    def __init__(self, settings: GatewaySettings) -> None:
        self.base_urls: dict[Service, str] = {
            Service.TASKS: settings.task_service_url,
            Service.SCRAPING: settings.scraping_service_url,
            Service.NOTIFICATIONS: settings.notification_service_url,
        }
        self._routes: dict[str, Route] = {}
        for spec in ROUTES:
            self._routes[spec.segment] = Route(
                service=spec.service,
                base_url=self.base_urls[spec.service],
                scope=spec.scope,
                max_body=settings.max_batch_body_bytes if spec.large_body else settings.max_body_bytes,
                label=RouteLabel(f"{API_PREFIX}/{spec.segment}/"),
                sub_label=RouteLabel(f"{API_PREFIX}/{spec.segment}/{{path}}"),
            )
        catch_all = RouteLabel(f"{API_PREFIX}/{{path}}")
        self._default = Route(
            service=DEFAULT_SERVICE,
            base_url=self.base_urls[DEFAULT_SERVICE],
            scope=None,
            max_body=settings.max_body_bytes,
            label=catch_all,
            sub_label=catch_all,
        )
        self._prefix_len = len(API_PREFIX)

    def match(self, path: str) -> tuple[Route, RouteLabel] | None:
        """The route for a path under API_PREFIX; None for any other path or a dot segment."""
        if not path.startswith(API_PREFIX):
            return None
        rest = path[self._prefix_len :]
        if not rest or rest == "/":
            return self._default, self._default.label
        if rest[0] != "/":
            return None  # e.g. /smart_application/tasksfoo
        if "/." in rest and any(seg in (".", "..") for seg in rest.split("/")):
            # Dot segments could be normalised by a client library into a path outside the prefix.
            return None
        segment, _, tail = rest[1:].partition("/")
        route = self._routes.get(segment)
        if route is None:
            return self._default, self._default.label
        return route, (route.sub_label if tail else route.label)

    def is_stream(self, path: str) -> bool:
        """Whether the path is an event stream (matched paths only: no dot segments)."""
        segment, _, tail = path[self._prefix_len + 1 :].partition("/")
        want = STREAM_PATHS.get(segment)
        if want is None:
            return False
        tail = tail.rstrip("/")
        return bool(tail) if want == "" else tail == want

    @staticmethod
    def is_public(method: str, path: str) -> bool:
        return method in ("GET", "HEAD") and path.rstrip("/") in PUBLIC_PATHS

    def services(self) -> dict[Service, str]:
        return dict(self.base_urls)
