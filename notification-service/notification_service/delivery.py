"""Delivering notifications: plan one delivery per device, claim, send, classify, record.

Runs inside a worker process on that process's event loop, with its one pooled HTTP
client. Concurrency is bounded by a semaphore; claims are taken a slice at a time just
ahead of the sends, so a lost worker strands at most one slice (the sweeper frees it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from notification_service import webhooks, webpush
from notification_service.classify import (
    Channel,
    Outcome,
    TransportError,
    classify,
    next_retry_delay,
)
from notification_service.devices import Device, Devices
from notification_service.ledger import (
    DELIVERED,
    EXPIRED,
    FAILED,
    GONE,
    QUEUED,
    Claimed,
    Ledger,
    Notification,
)
from notification_service.outbound import DeliveryClient, DeliveryError
from notification_service.payloads import webhook_body, webhook_message_id, webpush_payload_for
from notification_service.settings import NotificationSettings

log = logging.getLogger(__name__)
# Notifications planned per Redis pipeline.
PLAN_SLICE = 500


@dataclass
class RunResult:
    counts: Counter[str] = field(default_factory=Counter)
    # (notification_id, device_id, seconds from now) of every retry this run scheduled.
    retries: list[tuple[str, str, float]] = field(default_factory=list)


@dataclass
class Deliverer:
    settings: NotificationSettings
    ledger: Ledger
    devices: Devices
    http: DeliveryClient
    vapid: webpush.VapidKey

    async def deliver_notifications(self, nids: Sequence[str]) -> RunResult:
        """Plan (once) and attempt every delivery of these notifications."""
        notifs = await self.ledger.get_notifications(nids)
        if not notifs:
            return RunResult()
        ids = list(notifs)
        targets = await self.devices.targets(sorted({n.user_id for n in notifs.values()}))
        items = [(notifs[nid], targets[notifs[nid].user_id]) for nid in ids]
        claimed: list[Claimed] = []
        repeated: list[str] = []
        for start in range(0, len(items), PLAN_SLICE):
            made = await self.ledger.plan_and_claim(items[start : start + PLAN_SLICE])
            for (notif, _), got in zip(items[start : start + PLAN_SLICE], made, strict=True):
                if got is None:
                    repeated.append(notif.notification_id)
                else:
                    claimed.extend(got)
        result = await self._send_claimed(claimed, notifs, RunResult())
        if repeated:
            # A repeated run (redelivered task): whatever is still queued is attempted.
            planned = await self.ledger.planned(repeated)
            pairs = [(nid, dev) for nid in repeated for dev in sorted(planned[nid] or {})]
            again = await self.run(pairs, notifs)
            result.counts.update(again.counts)
            result.retries.extend(again.retries)
        return result

    async def _send_claimed(
        self, claimed: Sequence[Claimed], notifs: dict[str, Notification], result: RunResult
    ) -> RunResult:
        sem = asyncio.Semaphore(self.settings.notify_concurrency)
        devices = await self.devices.get_many(sorted({c.dev for c in claimed}))
        running: set[asyncio.Task[None]] = set()
        for claim in claimed:
            await sem.acquire()
            task = asyncio.create_task(
                self._attempt(claim, notifs.get(claim.nid), devices.get(claim.dev), result, sem)
            )
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running)
        return result

    async def run(
        self, pairs: Sequence[tuple[str, str]], notifs: dict[str, Notification] | None = None
    ) -> RunResult:
        """Attempt each (notification, device) whose delivery is queued and due."""
        if notifs is None:
            notifs = await self.ledger.get_notifications(sorted({nid for nid, _ in pairs}))
        result = RunResult()
        counts = result.counts
        concurrency = self.settings.notify_concurrency
        sem = asyncio.Semaphore(concurrency)
        running: set[asyncio.Task[None]] = set()
        step = max(concurrency, 32)
        devices: dict[str, Device] = {}
        for start in range(0, len(pairs), step):
            claimed, skipped = await self.ledger.claim(pairs[start : start + step], notifs)
            counts.update({f"skipped_{k}": v for k, v in skipped.items()})
            if not claimed:
                continue
            # Read once per run: a batch sends many notifications to the same devices.
            missing = sorted({c.dev for c in claimed} - devices.keys())
            if missing:
                devices.update(await self.devices.get_many(missing))
            for claim in claimed:
                await sem.acquire()
                task = asyncio.create_task(
                    self._attempt(claim, notifs.get(claim.nid), devices.get(claim.dev), result, sem)
                )
                running.add(task)
                task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running)
        return result

    async def _attempt(
        self,
        claim: Claimed,
        notif: Notification | None,
        device: Device | None,
        result: RunResult,
        sem: asyncio.Semaphore,
    ) -> None:
        try:
            status, next_at = await self.attempt(claim, notif, device)
            result.counts[status] += 1
            if next_at is not None:
                result.retries.append((claim.nid, claim.dev, max(0.0, next_at - time.time())))
        except Exception:
            # Left in `sending`: the sweeper re-queues it. Never lose the rest of the batch.
            log.exception("delivery attempt crashed", extra={"notification_id": claim.nid})
            result.counts["crashed"] += 1
        finally:
            sem.release()

    async def attempt(
        self, claim: Claimed, notif: Notification | None, device: Device | None
    ) -> tuple[str, float | None]:
        """One attempt of one claimed delivery: the state it ends in, and when to retry."""
        channel = device.channel if device is not None else Channel.WEBPUSH.value
        if notif is None:
            return await self._end(claim, notif, channel, FAILED, "the notification expired", 0.0)
        if device is None:
            return await self._end(claim, notif, channel, GONE, "the device was removed", 0.0)
        if not device.active:
            return await self._end(claim, notif, channel, FAILED, "the device is disabled", 0.0)
        remaining = int(notif.expires_ts - time.time())
        # TTL 0 means "now or never" (RFC 8030): one attempt, however late the queue is.
        if remaining <= 0 and not (notif.ttl == 0 and claim.attempt == 1):
            return await self._end(
                claim, notif, channel, EXPIRED, "the TTL passed before it could be sent", 0.0
            )
        if channel == Channel.WEBPUSH:
            request = webpush.build_request(
                device.subscription(),
                webpush_payload_for(notif),
                vapid=self.vapid,
                subject=self.settings.vapid_subject,
                ttl=max(0, min(remaining, webpush.MAX_TTL_SECONDS)),
                urgency=webpush.Urgency(notif.urgency),
                topic=notif.topic,
            )
            url, headers, body = request.url, request.headers, request.body
        else:
            body = webhook_body(notif)
            headers = webhooks.signed_headers(device.secret, webhook_message_id(claim.nid, claim.dev), body)
            headers["Content-Type"] = "application/json"
            url = device.endpoint

        http_status: int | None = None
        error: TransportError | None = None
        detail = ""
        retry_after: str | None = None
        started = time.perf_counter()
        try:
            response = await self.http.post(url, headers, body)
            http_status, retry_after = response.status, response.retry_after
        except DeliveryError as exc:
            error, detail = exc.kind, exc.reason
        latency_ms = (time.perf_counter() - started) * 1000

        verdict = classify(channel, http_status, error=error, retry_after=retry_after)
        reason = f"{verdict.reason}: {detail}" if detail else verdict.reason
        if verdict.outcome is Outcome.DELIVERED:
            return await self._end(
                claim, notif, channel, DELIVERED, "", latency_ms, http_status, verdict.outcome
            )
        if verdict.outcome is Outcome.GONE:
            ended = await self._end(
                claim, notif, channel, GONE, reason, latency_ms, http_status, verdict.outcome
            )
            if channel == Channel.WEBPUSH:
                await self.devices.prune(device)
            else:
                await self.devices.disable(device, "the receiver answered 410 Gone")
            return ended
        if verdict.outcome is Outcome.FAILED:
            return await self._end(
                claim, notif, channel, FAILED, reason, latency_ms, http_status, verdict.outcome
            )
        delay = next_retry_delay(
            verdict,
            claim.attempt,
            deadline=notif.expires_ts,
            base=self.settings.notify_retry_base_seconds,
            cap=self.settings.notify_retry_cap_seconds,
            max_attempts=self.settings.notify_max_attempts,
        )
        if delay is None:
            if claim.attempt >= self.settings.notify_max_attempts:
                final, why = FAILED, f"{reason} (gave up after {claim.attempt} attempts)"
            else:
                final, why = EXPIRED, f"{reason} (the TTL passes before another attempt)"
            return await self._end(
                claim, notif, channel, final, why, latency_ms, http_status, verdict.outcome
            )
        return await self._end(
            claim,
            notif,
            channel,
            QUEUED,
            reason,
            latency_ms,
            http_status,
            verdict.outcome,
            next_at=time.time() + delay,
        )

    async def _end(
        self,
        claim: Claimed,
        notif: Notification | None,
        channel: str,
        status: str,
        error: str,
        latency_ms: float,
        http_status: int | None = None,
        outcome: Outcome | None = None,
        *,
        next_at: float | None = None,
    ) -> tuple[str, float | None]:
        recorded = await self.ledger.finish(
            claim,
            notif,
            channel,
            status,
            error=error,
            http_status=http_status,
            latency_ms=latency_ms,
            outcome=outcome.value if outcome is not None else status,
            next_at=next_at,
        )
        if not recorded:
            # The sweeper took it back meanwhile; whoever holds it now records the outcome.
            return "claim_lost", None
        return status, next_at
