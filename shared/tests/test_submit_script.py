"""A submission writes its record and its fair-queue entry in one script (real Redis)."""

from __future__ import annotations

import os
import uuid

import pytest
import redis.asyncio as aioredis

from shared import BaseServiceSettings, TaskRecords
from shared._fairq import AsyncFairQueue
from shared._records import rec_key, user_key


@pytest.fixture
async def client():
    r = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    yield r
    await r.aclose()


async def submit(fq: AsyncFairQueue, records: TaskRecords, owner: str) -> tuple[str, str]:
    tid = str(uuid.uuid4())
    record = records.create_args({"task_id": tid, "owner": owner, "task_type": "noop", "inputs": {"a": 1}})
    out = await fq.submit(
        task_id=tid, owner=owner, record=record, priority=5, message=b"{}\n{}", countdown=None
    )
    return tid, out.status


async def test_record_and_queue_entry_are_written_together_and_a_refusal_leaves_nothing(client) -> None:
    records = TaskRecords(client, 60)
    fq = AsyncFairQueue(client, BaseServiceSettings(), f"submit-test-{uuid.uuid4()}")
    fq.limit = 2
    owner = f"owner-{uuid.uuid4()}"
    first, status = await submit(fq, records, owner)
    assert status == "queued"
    record = await records.get(first)
    assert record is not None
    assert (record["status"], record["attempts"], record["inputs"]) == ("PENDING", "0", {"a": 1})
    assert await client.zscore(user_key(owner), first) is not None
    assert await client.hget(fq.keys.prefix + "m:" + first, "msg") == b"{}\n{}"
    second, status = await submit(fq, records, owner)
    assert status == "queued"
    third, status = await submit(fq, records, owner)
    assert status == "too_many"
    assert not await client.exists(rec_key(third))  # refused: no record, no listing, no entry
    assert await client.zscore(user_key(owner), third) is None
    assert not await client.exists(fq.keys.prefix + "m:" + third)
    # a submission taken back (its publish failed) leaves nothing either
    await fq.abort(second, owner, [])
    assert not await client.exists(rec_key(second))
    assert await client.zscore(user_key(owner), second) is None
    assert await client.zcard(fq.keys.open + owner) == 1


async def test_an_id_submitted_again_writes_nothing_unless_it_was_never_queued(client) -> None:
    """A submitter that chose the id and repeats itself (a scheduler stalled past its lease
    while another took its run over) must not queue the task twice, nor turn its record back
    to PENDING once it has started or ended."""
    records = TaskRecords(client, 60)
    fq = AsyncFairQueue(client, BaseServiceSettings(), f"submit-test-{uuid.uuid4()}")
    owner = f"owner-{uuid.uuid4()}"

    async def again(tid: str) -> str:
        record = records.create_args({"task_id": tid, "owner": owner, "task_type": "noop"})
        out = await fq.submit(
            task_id=tid, owner=owner, record=record, priority=5, message=b"{}\n{}", countdown=None
        )
        return out.status

    queued, status = await submit(fq, records, owner)
    assert status == "queued"
    assert await again(queued) == "exists"  # still queued: not a second entry
    assert await client.zcard(fq.keys.prefix + "u:" + owner) <= 1
    await records.mark(queued, "SUCCESS", result={"ok": True})
    assert await again(queued) == "exists"  # ended: its record stays as it ended
    assert (await records.get(queued) or {})["status"] == "SUCCESS"
    # Recorded PENDING but not among the owner's unfinished tasks: it never reached its queue.
    orphan = str(uuid.uuid4())
    await records.create({"task_id": orphan, "owner": owner, "task_type": "noop"})
    assert await again(orphan) == "queued"
