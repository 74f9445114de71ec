"""The ledger's vocabulary: delivery states, where each thing lives in Redis, and what
planning hands to claiming (Target, Claimed).

Layout (everything under 'n:'; user ids are quoted so ':' cannot cross namespaces):
  n:n:{nid}          string  the notification, JSON, immutable once written
  n:nd:{nid}         hash    planned deliveries: device_id -> channel ('_planned' marks the plan,
                             '_cancelled' a cancellation)
  n:d:{nid}:{dev}    hash    one delivery: status channel attempts error http_status
                             created_at updated_at next_at since token batch_id
  n:da:{nid}:{dev}   list    every attempt: JSON {n, at, http_status, error, latency_ms, outcome}
  n:due              zset    "{nid}|{dev}" -> when the next attempt is due (retries, sweeps)
  n:sending          zset    "{nid}|{dev}" -> when it was claimed (the sweeper's index)
  n:sn:{nid}         string  a scheduled notification, JSON, until its send_at
  n:sched            zset    nid -> send_at of scheduled notifications
  n:deferred         zset    "{nid}|{dev}" -> when the recipient's quiet hours end
  n:b:{batch}        hash    batch_id owner count created_at task_id
  n:bn:{batch}       list    the batch's notification ids, in request order
  n:bc:{batch}       hash    deliveries of the batch by status (kept by the ledger's scripts)
  n:bf:{batch}       list    the batch's failed/gone/expired deliveries, JSON, first 1000
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any
from urllib.parse import quote

from notification_service.scripts import lua

QUEUED = "queued"
SENDING = "sending"
DELIVERED = "delivered"
FAILED = "failed"
GONE = "gone"
EXPIRED = "expired"
# Quiet hours of the recipient: waits in the deferred index until they end.
DEFERRED = "deferred"
# The recipient switched the channel off; never sent.
SKIPPED = "skipped"
# Its sender cancelled it before it went out.
CANCELLED = "cancelled"
DELIVERY_STATES = (QUEUED, SENDING, DELIVERED, FAILED, GONE, EXPIRED, DEFERRED, SKIPPED, CANCELLED)
FINAL_STATES = frozenset({DELIVERED, FAILED, GONE, EXPIRED, SKIPPED, CANCELLED})
# Deliveries still to go out: a batch holding any is not done.
WAITING_STATES = frozenset({QUEUED, SENDING, DEFERRED})
# Not gone out yet: claimed once due, or cancelled by the sender.
UNSENT_STATES = frozenset({QUEUED, DEFERRED})
# The one place the scripts get the states from: prepended to each, it names every state
# (QUEUED = 'queued', ...) and the set UNSENT, so no script spells a state itself.
STATES_LUA = (
    f"local {', '.join(s.upper() for s in DELIVERY_STATES)} = {', '.join(repr(s) for s in DELIVERY_STATES)}\n"
    f"local UNSENT = {{{', '.join(f'{s} = true' for s in sorted(UNSENT_STATES))}}}\n"
)
# What each ledger script is prepended with: the states, then lua/ledger_prelude.lua's helpers.
LEDGER_PRELUDE = STATES_LUA + lua("ledger_prelude.lua")
MAX_BATCH_FAILURES_KEPT = 1000
DUE_KEY = "n:due"
SENDING_KEY = "n:sending"
# Notifications held until their send_at (id -> when due), and deliveries deferred by quiet
# hours ("{nid}|{dev}" -> when they end). Pumped by the worker's clock and beat's sweeper.
SCHEDULED_KEY = "n:sched"
DEFERRED_KEY = "n:deferred"
# Notifications (plan) or attempts (finish) per script call: Redis runs one call at a time,
# so a call is kept to a few milliseconds.
SCRIPT_SLICE = 250
# A due entry handed to a worker is leased for this long: if the task is lost, it comes due again.
DUE_LEASE_SECONDS = 60.0


def q(user: str) -> str:
    return quote(user, safe="")


def id_key(prefix: str, ident: str) -> str:
    """A key of one thing: its prefix (the layouts' `n:...`) and its id."""
    return f"{prefix}:{ident}"


def user_key(prefix: str, user: str) -> str:
    """A key of one user's: the id quoted, so ':' in it cannot cross namespaces."""
    return id_key(prefix, q(user))


# The keys of one notification or batch, by the layout above.
notification_key = partial(id_key, "n:n")
# A scheduled notification's record until it is due (then it moves to n:n and the inbox).
scheduled_key = partial(id_key, "n:sn")
plan_key = partial(id_key, "n:nd")
batch_key = partial(id_key, "n:b")
batch_ids_key = partial(id_key, "n:bn")
batch_counts_key = partial(id_key, "n:bc")
batch_failures_key = partial(id_key, "n:bf")


def delivery_key(nid: str, dev: str) -> str:
    return f"n:d:{nid}:{dev}"


def attempts_key(nid: str, dev: str) -> str:
    return f"n:da:{nid}:{dev}"


def member(nid: str, dev: str) -> str:
    return f"{nid}|{dev}"


def split_member(value: Any) -> tuple[str, str]:
    nid, _, dev = text(value).partition("|")
    return nid, dev


def text(value: Any) -> str:
    """A Redis reply (bytes) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def iso(ts: float) -> str:
    """Epoch seconds as the API's UTC timestamps, to the millisecond."""
    return _iso_second(math.floor(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


@lru_cache(maxsize=256)
def _iso_second(second: int) -> str:
    # Every attempt recorded stamps the time: thousands a second share a handful of seconds,
    # and formatting one costs more than the rest of its record.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


@dataclass(frozen=True, slots=True)
class Target:
    """One device a notification is planned for, and the state its delivery starts in."""

    dev: str
    channel: str
    state: str = SENDING
    next_at: float | None = None  # deferred: when the recipient's quiet hours end


@dataclass(frozen=True, slots=True)
class Claimed:
    nid: str
    dev: str
    token: str
    attempt: int
