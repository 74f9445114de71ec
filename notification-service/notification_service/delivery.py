"""Delivering notifications: plan one delivery per device, claim, send, classify, record.

Runs inside a worker process on that process's event loop, with its one pooled HTTP
client. A fixed set of senders bounds the concurrency; claims are taken a slice at a time
just ahead of the sends, so a lost worker strands at most a slice or two (the sweeper
frees them).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from notification_service import webpush
from notification_service.classify import (
    Channel,
    Outcome,
    TransportError,
    classify,
    next_retry_delay,
)
from notification_service.devices import Device, Devices, DeviceSecretError
from notification_service.ledger import Ledger
from notification_service.ledger_keys import (
    DEFERRED,
    DELIVERED,
    EXPIRED,
    FAILED,
    GONE,
    QUEUED,
    SENDING,
    SKIPPED,
    Claimed,
    Target,
)
from notification_service.notification import Notification
from notification_service.payloads import webhook_body, webhook_message_id, webpush_payload_for
from notification_service.preferences import Preferences, PreferenceStore, quiet_until
from notification_service.settings import NotificationSettings
from shared import (
    NOTIFICATION_DELIVERIES,
    HostPacer,
    OutboundClient,
    OutboundError,
    OutboundRefused,
    OutboundTimeout,
    PaceTooFar,
    webhooks,
)

log = logging.getLogger(__name__)
# Looked up once per (channel, state) and per URL: labels() and urlsplit() cost more than
# the count and the pacing they serve, and a run repeats the same few of each thousands of times.
_deliveries = functools.cache(NOTIFICATION_DELIVERIES.labels)


@functools.lru_cache(maxsize=4096)
def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


# Notifications planned and claimed per Redis call, just ahead of their sends.
PLAN_SLICE = 100
# A batch is split into this many chunks (delivery tasks), so as many worker processes
# share it; but no chunk is smaller than MIN_CHUNK (unless notify_chunk_size is).
BATCH_SPREAD = 4
MIN_CHUNK = 250
# What a receiver's answer body is read for: only to keep the connection reusable.
MAX_RESPONSE_BYTES = 64 * 1024


def _transport_error(exc: OutboundError) -> TransportError:
    if isinstance(exc, OutboundRefused):
        return TransportError.BLOCKED  # the outbound rules refused the address: final
    if isinstance(exc, OutboundTimeout):
        return TransportError.TIMEOUT
    return TransportError.CONNECT


def _unsendable(
    claim: Claimed, notif: Notification | None, device: Device | None, remaining: int
) -> tuple[str, str] | None:
    """(final state, why) when a claimed delivery cannot be sent at all; None when it can.

    `remaining` is the notification's TTL left, in whole seconds."""
    if notif is None:
        return FAILED, "the notification expired"
    if device is None:
        return GONE, "the device was removed"
    if not device.active:
        return FAILED, "the device is disabled"
    # TTL 0 means "now or never" (RFC 8030): one attempt, however late the queue is.
    if remaining <= 0 and not (notif.ttl == 0 and claim.attempt == 1):
        return EXPIRED, "the TTL passed before it could be sent"
    return None


def chunk_size(size: int, largest: int, spread: int = BATCH_SPREAD) -> int:
    """Notifications per delivery task of a batch of `size`: `spread` tasks, so as many
    worker processes share it, within bounds. Each task costs its start and the ramp up
    and down of its sends, so none is smaller than MIN_CHUNK; none is larger than
    `largest`, so other tasks on the queue get their turn between chunks."""
    return max(min(MIN_CHUNK, largest), min(largest, math.ceil(size / spread)))


@dataclass
class RunResult:
    counts: Counter[str] = field(default_factory=Counter)
    # (notification_id, device_id, seconds from now) of every retry this run scheduled.
    retries: list[tuple[str, str, float]] = field(default_factory=list)


class _Tally:
    """Counts how a run's attempts ended as their records land; `settled` once all have."""

    def __init__(self, result: RunResult) -> None:
        self.result = result
        self._pending = 0
        self._settled = asyncio.Event()
        self._settled.set()

    def expect(
        self, claim: Claimed, status: str, next_at: float | None, count: Callable[[], None]
    ) -> Callable[[int | BaseException], None]:
        """What to call with the record's outcome: 1 recorded, 0 claim lost, or the error.

        `count` counts the attempt's outcome for the dashboard and alerts once it is
        recorded: a lost claim is counted by whoever holds it now."""
        self._pending += 1
        self._settled.clear()

        def landed(recorded: int | BaseException) -> None:
            counts = self.result.counts
            if isinstance(recorded, BaseException):
                # Left in `sending`: the sweeper re-queues it.
                log.error(
                    "recording a delivery attempt failed: %s",
                    type(recorded).__name__,
                    extra={"notification_id": claim.nid},
                )
                counts["crashed"] += 1
            elif not recorded:
                # The sweeper took it back meanwhile; whoever holds it now records the outcome.
                counts["claim_lost"] += 1
            else:
                count()
                counts[status] += 1
                if next_at is not None:
                    delay = max(0.0, next_at - time.time())
                    self.result.retries.append((claim.nid, claim.dev, delay))
            self._pending -= 1
            if not self._pending:
                self._settled.set()

        return landed

    async def settled(self) -> None:
        await self._settled.wait()


# A claimed delivery and its notification (None when it expired away).
_Work = tuple[Claimed, Notification | None]


@dataclass
class Deliverer:
    settings: NotificationSettings
    ledger: Ledger
    devices: Devices
    http: OutboundClient
    vapid: webpush.VapidKey
    # Deliveries per second to each destination host, across workers (None: unpaced).
    pacer: HostPacer | None = None
    # The recipients' channels and quiet hours (None: every channel on, no quiet hours).
    prefs: PreferenceStore | None = None

    async def deliver_notifications(self, nids: Sequence[str]) -> RunResult:
        """Plan (once) and attempt every delivery of these notifications."""
        result = RunResult()
        devices: dict[str, Device] = {}
        await self._send(self._first_claims(nids, devices, result), devices, result)
        return result

    async def run(
        self, pairs: Sequence[tuple[str, str]], notifs: dict[str, Notification] | None = None
    ) -> RunResult:
        """Attempt each (notification, device) whose delivery is queued and due."""
        if notifs is None:
            notifs = await self.ledger.get_notifications(sorted({nid for nid, _ in pairs}))
        result = RunResult()
        devices: dict[str, Device] = {}
        await self._send(self._claims(pairs, notifs, devices, result), devices, result)
        return result

    async def _first_claims(
        self, nids: Sequence[str], devices: dict[str, Device], result: RunResult
    ) -> AsyncIterator[list[_Work]]:
        """Read, plan and claim a slice at a time, just ahead of the sends.

        Reads each device once into `devices`, where the senders find it.
        """
        targets: dict[str, list[tuple[str, str]]] = {}
        prefs: dict[str, Preferences] = {}
        repeated: dict[str, Notification] = {}
        for start in range(0, len(nids), PLAN_SLICE):
            found = await self.ledger.get_notifications(nids[start : start + PLAN_SLICE])
            # A scheduled notification whose send_at is still ahead waits for the pump (a
            # batch's scheduled items are not in n:n until then, so they are not found here).
            # Read once per run: a batch sends many notifications to the same users.
            users = sorted({n.user_id for n in found.values()} - targets.keys())
            if users:
                targets.update(await self.devices.targets(users))
                if self.prefs is not None:
                    prefs.update(await self.prefs.get_many(users))
                await self._read_devices({dev for user in users for dev, _ in targets[user]}, devices)
            now = datetime.now(UTC)
            items = [
                (notif, self._plan(notif, targets[notif.user_id], prefs.get(notif.user_id), now))
                for notif in found.values()
            ]
            work: list[_Work] = []
            for (notif, plan), got in zip(items, await self.ledger.plan_and_claim(items), strict=True):
                if got is None:
                    repeated[notif.notification_id] = notif
                    continue
                work += ((claim, notif) for claim in got)
                for t in plan:
                    if t.state != SENDING:
                        # Counted once, when planned; a deferred one is counted again when sent.
                        _deliveries(t.channel, t.state).inc()
                        result.counts[t.state] += 1
            yield work
        if repeated:
            # A repeated run (redelivered task): whatever is still queued is attempted.
            planned = await self.ledger.planned(list(repeated))
            pairs = [(nid, dev) for nid in repeated for dev in sorted(planned[nid] or {})]
            async for work in self._claims(pairs, repeated, devices, result):
                yield work

    @staticmethod
    def _plan(
        notif: Notification, devices: list[tuple[str, str]], prefs: Preferences | None, now: datetime
    ) -> list[Target]:
        """The state each delivery starts in, from the recipient's preferences."""
        if prefs is None:
            return [Target(dev, channel) for dev, channel in devices]
        until = None if notif.priority == "critical" else quiet_until(prefs.quiet_hours, now)
        out = []
        for dev, channel in devices:
            if not prefs.allows(channel):
                out.append(Target(dev, channel, SKIPPED))
            elif until is not None:
                out.append(Target(dev, channel, DEFERRED, until.timestamp()))
            else:
                out.append(Target(dev, channel))
        return out

    async def _claims(
        self,
        pairs: Sequence[tuple[str, str]],
        notifs: dict[str, Notification],
        devices: dict[str, Device],
        result: RunResult,
    ) -> AsyncIterator[list[_Work]]:
        """Claim queued, due deliveries a slice at a time, just ahead of the sends."""
        step = max(self.settings.notify_concurrency, 32)
        for start in range(0, len(pairs), step):
            claimed, skipped = await self.ledger.claim(pairs[start : start + step], notifs)
            result.counts.update({f"skipped_{k}": v for k, v in skipped.items()})
            await self._read_devices({c.dev for c in claimed}, devices)
            yield [(claim, notifs.get(claim.nid)) for claim in claimed]

    async def _read_devices(self, devs: set[str], devices: dict[str, Device]) -> None:
        # Once per run: a batch sends many notifications to the same devices.
        missing = sorted(devs - devices.keys())
        if missing:
            devices.update(await self.devices.get_many(missing))

    async def _send(
        self, claims: AsyncIterator[list[_Work]], devices: dict[str, Device], result: RunResult
    ) -> None:
        """Attempt every claim with at most `notify_concurrency` requests in flight.

        A fixed set of senders takes claims from a short line that is topped up a slice at
        a time when it runs low, so the claims never run far ahead of the sends (a lost
        worker strands few of them in `sending`) and the next slice is claimed while the
        line still holds work. An attempt's record is written with others ending about
        then; its sender goes on meanwhile, and the run ends once every record landed.
        """
        concurrency = self.settings.notify_concurrency
        line: deque[_Work] = deque()
        low = asyncio.Event()  # the line ran low: claim the next slice
        fed = asyncio.Event()  # the line was topped up, or there is nothing more to claim
        finished = False
        tally = _Tally(result)
        # Each webhook device's signer, its key unsealed once per run rather than per attempt (a
        # batch sends many notifications to the same devices); kept only while the run lasts.
        signers: dict[str, webhooks.Signer] = {}

        async def sender() -> None:
            while True:
                if line:
                    claim, notif = line.popleft()
                    if len(line) < concurrency:
                        low.set()
                    try:
                        await self.attempt(claim, notif, devices.get(claim.dev), tally, signers)
                    except Exception:
                        # Left in `sending`: the sweeper re-queues it. Never lose the rest.
                        log.exception("delivery attempt crashed", extra={"notification_id": claim.nid})
                        result.counts["crashed"] += 1
                elif finished:
                    return
                else:
                    fed.clear()
                    await fed.wait()

        senders: list[asyncio.Task[None]] = []
        try:
            async for work in claims:
                line.extend(work)
                fed.set()
                # No more senders than claims: one notification needs one, not 64.
                while len(senders) < min(concurrency, len(line)):
                    senders.append(asyncio.create_task(sender()))
                while len(line) >= concurrency:
                    low.clear()
                    await low.wait()
        finally:
            finished = True
            fed.set()
            await asyncio.gather(*senders)
            await tally.settled()

    async def attempt(
        self,
        claim: Claimed,
        notif: Notification | None,
        device: Device | None,
        tally: _Tally,
        signers: dict[str, webhooks.Signer],
    ) -> None:
        """One attempt of one claimed delivery, recorded with the state it ends in.

        `signers` holds the run's webhook signers (their keys unsealed) by device id.
        """
        channel = device.channel if device is not None else Channel.WEBPUSH.value
        remaining = 0 if notif is None else int(notif.expires_ts - time.time())
        unsendable = _unsendable(claim, notif, device, remaining)
        if unsendable is not None:
            self._end(tally, claim, notif, channel, *unsendable, 0.0)
            return
        assert notif is not None and device is not None  # _unsendable said so
        if channel == Channel.WEBPUSH:
            request = webpush.build_request(
                device.subscription(),
                webpush_payload_for(notif),
                vapid=self.vapid,
                subject=self.settings.vapid_subject,
                ttl=max(0, min(remaining, webpush.MAX_TTL_SECONDS)),
                urgency=notif.urgency,
                topic=notif.topic,
            )
            url, headers, body = request.url, request.headers, request.body
        else:
            try:
                signer = signers.get(device.device_id)
                if signer is None:
                    signer = signers[device.device_id] = webhooks.Signer(self.devices.signing_secret(device))
            except DeviceSecretError as exc:
                # Loud, and final: a retry cannot fix it, and signing with anything else is wrong.
                log.error("webhook delivery not signed: %s", exc, extra={"device_id": device.device_id})
                self._end(tally, claim, notif, channel, FAILED, str(exc), 0.0)
                return
            body = webhook_body(notif)
            headers = webhooks.signed_headers(signer, webhook_message_id(claim.nid, claim.dev), body)
            headers["Content-Type"] = "application/json"
            url = device.endpoint

        if self.pacer is not None:
            host = _host(url)
            try:
                await self.pacer.wait_turn(host)
            except PaceTooFar as exc:
                # The host's turns are booked further ahead than a claim may be held: later.
                why = f"paced: {host} is at its NOTIFY_MAX_PER_HOST_PER_SECOND"
                give_up = claim.attempt >= self.settings.notify_max_attempts
                next_at = None if give_up else time.time() + exc.wait_s
                state = FAILED if give_up else QUEUED
                self._end(tally, claim, notif, channel, state, why, 0.0, next_at=next_at)
                return

        http_status: int | None = None
        error: TransportError | None = None
        detail = ""
        retry_after: str | None = None
        started = time.perf_counter()
        try:
            # Never follow a redirect: a 3xx is the receiver's answer. Read a small body
            # so the connection is reused; a larger one is cut off with its connection.
            response = await self.http.post(
                url,
                content=body,
                headers=headers,
                follow_redirects=False,
                max_bytes=MAX_RESPONSE_BYTES,
                truncate=True,
                timeout=self.settings.notify_http_timeout,
            )
            http_status, retry_after = response.status_code, response.headers.get("Retry-After")
        except OutboundError as exc:
            error, detail = _transport_error(exc), exc.reason
        latency_ms = (time.perf_counter() - started) * 1000

        verdict = classify(channel, http_status, error=error, retry_after=retry_after)
        reason = f"{verdict.reason}: {detail}" if detail else verdict.reason
        if verdict.outcome is Outcome.DELIVERED:
            self._end(tally, claim, notif, channel, DELIVERED, "", latency_ms, http_status, verdict.outcome)
            return
        if verdict.outcome is Outcome.GONE:
            self._end(tally, claim, notif, channel, GONE, reason, latency_ms, http_status, verdict.outcome)
            if channel == Channel.WEBPUSH:
                await self.devices.prune(device)
            else:
                await self.devices.disable(device, "the receiver answered 410 Gone")
            return
        if verdict.outcome is Outcome.FAILED:
            self._end(tally, claim, notif, channel, FAILED, reason, latency_ms, http_status, verdict.outcome)
            return
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
            self._end(tally, claim, notif, channel, final, why, latency_ms, http_status, verdict.outcome)
            return
        self._end(
            tally,
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

    def _end(
        self,
        tally: _Tally,
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
    ) -> None:
        # A queued one is a retry.
        counted = _deliveries(channel, "retry" if status == QUEUED else status)
        landed = tally.expect(claim, status, next_at, counted.inc)
        try:
            self.ledger.finish_soon(
                claim,
                notif,
                channel,
                status,
                error=error,
                http_status=http_status,
                latency_ms=latency_ms,
                outcome=outcome.value if outcome is not None else status,
                next_at=next_at,
                then=landed,
            )
        except Exception as exc:
            landed(exc)  # the run must not wait for a record that was never queued
