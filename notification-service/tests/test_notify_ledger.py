"""The per-delivery state machine against the real Redis: claims, stale workers, the sweeper."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from notification_service.ledger import DUE_KEY, Ledger, Notification
from notification_service.sending import aggregate_status


@pytest.fixture
async def ledger(notify_redis_url: str) -> AsyncIterator[Ledger]:
    client = aioredis.Redis.from_url(notify_redis_url)
    try:
        yield Ledger(client, 600)
    finally:
        await client.aclose()


def _notif(ttl: int = 600, batch_id: str | None = None) -> Notification:
    now = time.time()
    return Notification(
        notification_id=str(uuid.uuid4()),
        sender="s",
        user_id="u",
        title="t",
        message="m",
        data={},
        ttl=ttl,
        urgency="normal",
        topic="x",
        created_at="2024-01-01T00:00:00.000Z",
        created_ts=now,
        batch_id=batch_id,
    )


async def _finish(ledger: Ledger, claim: object, notif: Notification, status: str, **kw: object) -> bool:
    return await ledger.finish(
        claim,  # type: ignore[arg-type]
        notif,
        "webhook",
        status,
        error=str(kw.get("error", "")),
        http_status=kw.get("http_status"),  # type: ignore[arg-type]
        latency_ms=1.0,
        outcome=status,
        next_at=kw.get("next_at"),  # type: ignore[arg-type]
    )


async def test_plan_claims_once_and_a_repeat_plans_nothing(ledger: Ledger) -> None:
    notif = _notif()
    (first,) = await ledger.plan_and_claim([(notif, [("d1", "webhook"), ("d2", "webhook")])])
    assert first is not None and [c.dev for c in first] == ["d1", "d2"]
    (again,) = await ledger.plan_and_claim([(notif, [("d1", "webhook")])])
    assert again is None
    # Both are being sent: nobody else can claim them.
    claimed, skipped = await ledger.claim([(notif.notification_id, "d1")], {notif.notification_id: notif})
    assert claimed == [] and skipped == {"sending": 1}


async def test_a_stale_worker_cannot_finish_after_the_sweeper(ledger: Ledger) -> None:
    notif = _notif()
    nid = notif.notification_id
    (claims,) = await ledger.plan_and_claim([(notif, [("d1", "webhook")])])
    assert claims is not None
    (stale,) = claims
    assert await ledger.sweep_stuck(stuck_after=0.0) >= 1
    # Queued again and due now; a new claim takes it with attempt 2.
    claimed, _ = await ledger.claim([(nid, "d1")], {nid: notif})
    (fresh,) = claimed
    assert fresh.attempt == 2 and fresh.token != stale.token
    assert not await _finish(ledger, stale, notif, "delivered", http_status=204)
    assert await _finish(ledger, fresh, notif, "delivered", http_status=204)
    # Delivered is final: nothing claims it again.
    claimed, skipped = await ledger.claim([(nid, "d1")], {nid: notif})
    assert claimed == [] and skipped == {"delivered": 1}
    planned, deliveries = await ledger.deliveries(nid)
    assert planned and aggregate_status(planned, deliveries) == "delivered"
    assert [a["n"] for a in deliveries[0]["history"]] == [2]


async def test_retry_waits_until_due_and_expires_with_the_ttl(ledger: Ledger) -> None:
    notif = _notif(ttl=1)
    nid = notif.notification_id
    (claims,) = await ledger.plan_and_claim([(notif, [("d1", "webhook")])])
    assert claims is not None
    next_at = time.time() + 30
    assert await _finish(ledger, claims[0], notif, "queued", error="http 500", next_at=next_at)
    assert await ledger.r.zscore(DUE_KEY, f"{nid}|d1") == pytest.approx(next_at)
    claimed, skipped = await ledger.claim([(nid, "d1")], {nid: notif})
    assert claimed == [] and skipped == {"not_due": 1}
    await ledger.r.hset(f"n:d:{nid}:d1", "next_at", time.time() - 1)
    time.sleep(1.1)  # the TTL passes
    claimed, skipped = await ledger.claim([(nid, "d1")], {nid: notif})
    assert claimed == [] and skipped == {"expired": 1}
    _, deliveries = await ledger.deliveries(nid)
    assert deliveries[0]["status"] == "expired"


async def test_batch_counts_follow_every_move(ledger: Ledger) -> None:
    bid = str(uuid.uuid4())
    notifs = [_notif(batch_id=bid) for _ in range(3)]
    await ledger.create_batch(bid, "s", [n.notification_id for n in notifs], "t", "now")
    made = await ledger.plan_and_claim([(n, [("d1", "webhook")]) for n in notifs])
    claims = [c for group in made if group for c in group]
    assert (await ledger.batch_counts(bid))["sending"] == 3
    await _finish(ledger, claims[0], notifs[0], "delivered", http_status=204)
    await _finish(ledger, claims[1], notifs[1], "failed", error="http 403", http_status=403)
    await _finish(ledger, claims[2], notifs[2], "gone", error="http 410", http_status=410)
    counts = await ledger.batch_counts(bid)
    assert (counts["delivered"], counts["failed"], counts["gone"], counts["sending"]) == (1, 1, 1, 0)
    assert counts["_planned"] == 3
    failures = await ledger.batch_failures(bid)
    assert sorted(f["status"] for f in failures) == ["failed", "gone"]
