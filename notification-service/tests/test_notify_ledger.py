"""The per-delivery state machine against the real Redis: claims, stale workers, the sweeper."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from notification_service.delivery import chunk_size
from notification_service.ledger import Ledger
from notification_service.ledger_keys import DEFERRED, DUE_KEY, SENDING_KEY, SKIPPED, Target, split_member
from notification_service.notification import Notification
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
    """finish_soon, awaited: True when recorded, False when the claim was lost."""
    recorded: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def then(outcome: int | BaseException) -> None:
        if isinstance(outcome, BaseException):
            recorded.set_exception(outcome)
        else:
            recorded.set_result(outcome)

    ledger.finish_soon(
        claim,  # type: ignore[arg-type]
        notif,
        "webhook",
        status,
        error=str(kw.get("error", "")),
        http_status=kw.get("http_status"),  # type: ignore[arg-type]
        latency_ms=1.0,
        outcome=status,
        next_at=kw.get("next_at"),  # type: ignore[arg-type]
        then=then,
    )
    return bool(await recorded)


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


async def test_attempts_ending_together_are_recorded_in_one_call(ledger: Ledger) -> None:
    """One script call records many attempts: two batches, no batch, and a lost claim."""
    bid_a, bid_b = str(uuid.uuid4()), str(uuid.uuid4())
    a = [_notif(batch_id=bid_a) for _ in range(3)]
    b = [_notif(batch_id=bid_b) for _ in range(2)]
    loose = _notif()
    for bid, group in ((bid_a, a), (bid_b, b)):
        await ledger.create_batch(bid, "s", [n.notification_id for n in group], "t", "now")
    notifs = [*a, *b, loose]
    made = await ledger.plan_and_claim([(n, [("d1", "webhook")]) for n in notifs])
    claims = [group[0] for group in made if group]
    assert len(claims) == 6
    # The sweeper takes one back before its attempt is recorded: that record must be refused.
    stale = claims[4]
    await ledger.r.hset(f"n:d:{stale.nid}:d1", "token", "someone-else")
    later = time.time() + 60
    calls: list[int] = []
    finish_many = ledger._finish_many

    async def watched(entries: Any) -> list[int]:
        calls.append(len(entries))
        return await finish_many(entries)

    ledger._finish_many = watched  # type: ignore[method-assign]
    ends: list[tuple[str, dict[str, Any]]] = [
        ("delivered", {"http_status": 204}),
        ("failed", {"http_status": 403, "error": "http 403"}),
        ("queued", {"http_status": 503, "error": "http 503", "next_at": later}),
        ("gone", {"http_status": 410, "error": "http 410"}),
        ("delivered", {"http_status": 204}),
        ("expired", {"error": "timeout"}),
    ]
    recorded = await asyncio.gather(
        *(
            _finish(ledger, c, n, status, **kw)
            for c, n, (status, kw) in zip(claims, notifs, ends, strict=True)
        )
    )
    assert recorded == [True, True, True, True, False, True]
    assert calls == [6]

    counts_a, counts_b = await ledger.batch_counts(bid_a), await ledger.batch_counts(bid_b)
    assert (counts_a["sending"], counts_a["delivered"], counts_a["failed"], counts_a["queued"]) == (
        0,
        1,
        1,
        1,
    )
    assert (counts_b["sending"], counts_b["gone"], counts_b["delivered"]) == (1, 1, 0)
    assert [f["status"] for f in await ledger.batch_failures(bid_a)] == ["failed"]
    assert [f["status"] for f in await ledger.batch_failures(bid_b)] == ["gone"]
    assert await ledger.r.zscore(DUE_KEY, f"{a[2].notification_id}|d1") == pytest.approx(later)
    for notif, (status, kw) in zip(notifs, ends, strict=True):
        _, (delivery,) = await ledger.deliveries(notif.notification_id)
        if notif is b[1]:
            assert delivery["status"] == "sending" and delivery["history"] == []
            continue
        assert delivery["status"] == status
        assert [(h["n"], h["http_status"]) for h in delivery["history"]] == [(1, kw.get("http_status"))]
    # Still in the sweeper's index: only the lost claim.
    sending = {split_member(m) for m in await ledger.r.zrange(SENDING_KEY, 0, -1)}
    assert {(n.notification_id, "d1") for n in notifs} & sending == {(stale.nid, "d1")}


@pytest.mark.parametrize(
    ("size", "chunk"),
    [(1, 250), (1000, 250), (10_000, 2500), (100_000, 2500), (3000, 750)],
)
def test_batches_are_split_for_the_processes_within_bounds(size: int, chunk: int) -> None:
    assert chunk_size(size, largest=2500, spread=4) == chunk


async def test_deferred_and_skipped_deliveries_start_in_their_state_and_cancel_stops_only_unsent(
    ledger: Ledger,
) -> None:
    notif = _notif(batch_id=f"b-{uuid.uuid4().hex[:8]}")
    nid = notif.notification_id
    await ledger.create_batch(notif.batch_id or "", "s", [nid], "t", "2024-01-01T00:00:00.000Z")
    later = time.time() + 3600
    (claims,) = await ledger.plan_and_claim(
        [
            (
                notif,
                [
                    Target("d1", "webhook"),
                    Target("d2", "webhook", DEFERRED, later),
                    Target("d3", "webpush", SKIPPED),
                ],
            )
        ]
    )
    assert claims is not None and [c.dev for c in claims] == ["d1"]
    _, rows = await ledger.deliveries(nid)
    states = {r["device_id"]: (r["status"], r["attempts"]) for r in rows}
    assert states == {"d1": ("sending", 1), "d2": ("deferred", 0), "d3": ("skipped", 0)}
    counts = await ledger.batch_counts(notif.batch_id or "")
    assert (counts["sending"], counts["deferred"], counts["skipped"], counts["_planned"]) == (1, 1, 1, 1)
    # Not due yet: the pump does not hand it out, and a claim refuses it.
    _, deferred = await ledger.take_later()
    assert (nid, "d2") not in deferred
    claimed, skipped = await ledger.claim([(nid, "d2")], {nid: notif})
    assert claimed == [] and skipped == {"not_due": 1}
    # Cancelling stops the deferred one only: the one being sent and the skipped one stay.
    cancelled, left = await ledger.cancel(notif)
    assert cancelled == 1 and left == {"sending": 1, "skipped": 1}
    assert await ledger.is_cancelled(nid)
    counts = await ledger.batch_counts(notif.batch_id or "")
    assert (counts["deferred"], counts["cancelled"]) == (0, 1)


async def test_a_scheduled_notification_is_taken_once_per_lease_and_cancel_wins_before_planning(
    ledger: Ledger,
) -> None:
    notif = dataclasses.replace(_notif(), send_at=time.time() - 0.1)
    other = dataclasses.replace(_notif(), send_at=time.time() - 0.1)
    await ledger.schedule([notif, other])
    first, _ = await ledger.take_later()
    second, _ = await ledger.take_later()
    assert {notif.notification_id, other.notification_id} <= set(first)
    assert not {notif.notification_id, other.notification_id} & set(second), "leased: not handed out twice"
    assert await ledger.cancel(other) == (-1, {})
    held = await ledger.scheduled_records([notif.notification_id, other.notification_id])
    assert list(held) == [notif.notification_id]
    # The cancelled one is planned with nothing: a delivery task still running for it sends nothing.
    assert await ledger.plan_and_claim([(other, [("d1", "webhook")])]) == [None]
    assert (await ledger.planned([other.notification_id]))[other.notification_id] == {}
