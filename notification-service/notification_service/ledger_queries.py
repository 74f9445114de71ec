"""Reading the ledger: notifications, a notification's plan and deliveries with their attempts,
batches and their counts. The base of Ledger: the planning and the state moves build on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from redis.asyncio import Redis

from notification_service.ledger_keys import (
    DEFERRED,
    DELIVERY_STATES,
    QUEUED,
    SCHEDULED_KEY,
    attempts_key,
    batch_counts_key,
    batch_failures_key,
    batch_ids_key,
    batch_key,
    delivery_key,
    iso,
    notification_key,
    plan_key,
    scheduled_key,
    text,
)
from notification_service.notification import Notification


class LedgerQueries:
    """What the API and the workers read from the ledger."""

    def __init__(self, client: Redis, retention_seconds: int) -> None:
        self.r = client
        self.retention = retention_seconds

    # -- notifications ----------------------------------------------------------------------

    async def get_notification(self, nid: str) -> Notification | None:
        """The notification, sent or still scheduled."""
        raw, held = await self.r.mget([notification_key(nid), scheduled_key(nid)])
        found = raw or held
        return Notification.from_json(found) if found else None

    async def get_notifications(self, nids: Sequence[str]) -> dict[str, Notification]:
        if not nids:
            return {}
        raws = await self.r.mget([notification_key(n) for n in nids])
        return {n: Notification.from_json(raw) for n, raw in zip(nids, raws, strict=True) if raw}

    async def is_scheduled(self, nid: str) -> bool:
        return await self.r.zscore(SCHEDULED_KEY, nid) is not None

    async def is_cancelled(self, nid: str) -> bool:
        return bool(await self.r.hexists(plan_key(nid), "_cancelled"))

    async def scheduled_records(self, nids: Sequence[str]) -> dict[str, Notification]:
        """The held records of these scheduled notifications that are neither gone nor cancelled."""
        if not nids:
            return {}
        raws = await self.r.mget([scheduled_key(n) for n in nids])
        async with self.r.pipeline(transaction=False) as pipe:
            for nid in nids:
                pipe.hexists(plan_key(nid), "_cancelled")
            cancelled = await pipe.execute()
        return {
            n: Notification.from_json(raw)
            for n, raw, gone in zip(nids, raws, cancelled, strict=True)
            if raw and not gone
        }

    # -- deliveries -----------------------------------------------------------------------------

    async def planned(self, nids: Sequence[str]) -> dict[str, dict[str, str] | None]:
        """Each notification's deliveries as device_id -> channel; None when not planned yet."""
        async with self.r.pipeline(transaction=False) as pipe:
            for nid in nids:
                pipe.hgetall(plan_key(nid))
            rows = await pipe.execute()
        out: dict[str, dict[str, str] | None] = {}
        for nid, raw in zip(nids, rows, strict=True):
            if not raw:
                out[nid] = None
                continue
            out[nid] = {text(k): text(v) for k, v in raw.items() if not text(k).startswith("_")}
        return out

    async def deliveries(self, nid: str) -> tuple[bool, list[dict[str, Any]]]:
        """Whether the deliveries are planned, and their records, each with its attempts."""
        found = (await self.planned([nid]))[nid]
        plan = found or {}
        devs = sorted(plan)
        async with self.r.pipeline(transaction=False) as pipe:
            for dev in devs:
                pipe.hgetall(delivery_key(nid, dev))
                pipe.lrange(attempts_key(nid, dev), 0, -1)
            rows = await pipe.execute()
        out = []
        for i, dev in enumerate(devs):
            raw = {text(k): text(v) for k, v in rows[2 * i].items()}
            if not raw:
                continue
            attempts = [orjson.loads(a) for a in rows[2 * i + 1]]
            out.append(
                {
                    "device_id": dev,
                    "channel": raw.get("channel", plan[dev]),
                    "status": raw.get("status", QUEUED),
                    "attempts": int(raw.get("attempts", "0")),
                    "error": raw.get("error") or None,
                    "http_status": int(raw["http_status"]) if raw.get("http_status") else None,
                    "next_attempt_at": iso(float(raw["next_at"]))
                    if raw.get("status") in (QUEUED, DEFERRED) and raw.get("next_at")
                    else None,
                    "updated_at": iso(float(raw["updated_at"])) if raw.get("updated_at") else None,
                    "history": attempts,
                }
            )
        return found is not None, out

    # -- batches ------------------------------------------------------------------------------

    async def batch(self, bid: str) -> dict[str, str] | None:
        raw = await self.r.hgetall(batch_key(bid))
        return {text(k): text(v) for k, v in raw.items()} if raw else None

    async def batch_ids(self, bid: str, start: int = 0, stop: int = -1) -> list[str]:
        raw = await self.r.lrange(batch_ids_key(bid), start, stop)
        return [text(x) for x in raw]

    async def batch_size(self, bid: str) -> int:
        return int(await self.r.llen(batch_ids_key(bid)))

    async def batch_counts(self, bid: str) -> dict[str, int]:
        raw = await self.r.hgetall(batch_counts_key(bid))
        counts = {state: 0 for state in DELIVERY_STATES}
        for k, v in raw.items():
            counts[text(k)] = max(0, int(v))
        counts.setdefault("_planned", 0)
        return counts

    async def batch_failures(self, bid: str, limit: int = 100) -> list[dict[str, Any]]:
        raw = await self.r.lrange(batch_failures_key(bid), 0, limit - 1)
        return [orjson.loads(x) for x in raw]
