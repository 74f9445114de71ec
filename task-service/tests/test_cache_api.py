"""The richer cache (API.md "More of the cache"): ETag and ttl on GET, conditional writes that
are atomic under a race, a prefix listing of only the caller's keys, and cache-batch; against
the real task-service and Redis."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re

import httpx
import orjson
import redis.asyncio as aioredis
from test_tasks_api import P, assert_envelope

ETAG = re.compile(r'^"[0-9a-f]{40}"$')


async def put(client: httpx.AsyncClient, h: dict[str, str], key: str, value: object, **headers: str):
    return await client.put(f"{P}/cache/{key}", json={"value": value}, headers={**h, **headers})


async def test_get_answers_ttl_and_a_strong_etag_of_the_value(task_client, auth) -> None:
    h = auth("etag-ann", "cache")
    r = await task_client.put(f"{P}/cache/doc", json={"value": {"v": 1}, "ttl": 120}, headers=h)
    assert r.status_code == 200 and ETAG.match(r.headers["ETag"]), r.headers
    first = r.headers["ETag"]
    assert first == f'"{hashlib.sha1(orjson.dumps({"v": 1})).hexdigest()}"'
    r = await task_client.get(f"{P}/cache/doc", headers=h)
    assert r.status_code == 200 and r.headers["ETag"] == first
    assert r.json()["value"] == {"v": 1} and 110 <= r.json()["ttl"] <= 120
    changed = (await put(task_client, h, "doc", {"v": 2})).headers["ETag"]
    assert changed != first and ETAG.match(changed)
    assert (await task_client.get(f"{P}/cache/doc", headers=h)).headers["ETag"] == changed
    # The tag names the bytes: the same value written again has the same tag.
    assert (await put(task_client, h, "doc", {"v": 1})).headers["ETag"] == first


async def test_if_match_writes_only_over_the_version_read(task_client, auth) -> None:
    h = auth("etag-ben", "cache")
    old = (await put(task_client, h, "cfg", "v1")).headers["ETag"]
    new = (await put(task_client, h, "cfg", "v2", **{"If-Match": old})).headers["ETag"]
    # The tag read before v2 is stale now: 412, and the value is untouched.
    r = await put(task_client, h, "cfg", "lost", **{"If-Match": old})
    err = assert_envelope(r, 412, "precondition_failed")
    assert "If-Match" in err["message"]
    assert (await task_client.get(f"{P}/cache/cfg", headers=h)).json()["value"] == "v2"
    # A list matches when it holds the current tag; "*" when the key exists.
    r = await put(task_client, h, "cfg", "v3", **{"If-Match": f"{old}, {new}"})
    assert r.status_code == 200, r.text
    assert (await put(task_client, h, "cfg", "v4", **{"If-Match": "*"})).status_code == 200
    assert_envelope(await put(task_client, h, "absent", 1, **{"If-Match": "*"}), 412, "precondition_failed")
    assert_envelope(await task_client.get(f"{P}/cache/absent", headers=h), 404)
    # If-Match compares strongly: a weak tag never matches.
    current = (await task_client.get(f"{P}/cache/cfg", headers=h)).headers["ETag"]
    assert_envelope(await put(task_client, h, "cfg", "weak", **{"If-Match": f"W/{current}"}), 412)
    assert_envelope(
        await put(task_client, h, "cfg", "bad", **{"If-Match": "no-quotes"}), 400, "invalid_precondition"
    )
    assert (await task_client.get(f"{P}/cache/cfg", headers=h)).json()["value"] == "v4"
    # Another user's tag for the same key name is no key of theirs.
    other = auth("etag-ben-rival", "cache")
    assert_envelope(await put(task_client, other, "cfg", "x", **{"If-Match": current}), 412)


async def test_if_none_match_star_creates_exactly_once(task_client, auth) -> None:
    h = auth("etag-cat", "cache")
    answers = await asyncio.gather(
        *(put(task_client, h, "lock", f"owner-{i}", **{"If-None-Match": "*"}) for i in range(20))
    )
    won = [i for i, r in enumerate(answers) if r.status_code == 200]
    assert len(won) == 1, [r.status_code for r in answers]
    for r in answers:
        if r.status_code != 200:
            assert_envelope(r, 412, "precondition_failed")
    got = await task_client.get(f"{P}/cache/lock", headers=h)
    assert got.json()["value"] == f"owner-{won[0]}"
    assert got.headers["ETag"] == answers[won[0]].headers["ETag"]
    assert (await task_client.delete(f"{P}/cache/lock", headers=h)).status_code == 204
    assert (await put(task_client, h, "lock", "again", **{"If-None-Match": "*"})).status_code == 200


async def test_two_clients_racing_with_one_etag_have_exactly_one_winner_each_time(task_stack, auth) -> None:
    h = auth("etag-race", "cache")
    url = task_stack.urls["task"]
    pairs = 40
    async with (
        httpx.AsyncClient(base_url=url, timeout=60) as a,
        httpx.AsyncClient(base_url=url, timeout=60) as b,
    ):
        await asyncio.gather(*(put(a, h, f"counter-{i}", 0) for i in range(pairs)))
        reads = await asyncio.gather(*(b.get(f"{P}/cache/counter-{i}", headers=h) for i in range(pairs)))
        tags = [r.headers["ETag"] for r in reads]
        # Both clients read the same tag and write a different update over it, all pairs at once.
        writes = await asyncio.gather(
            *(
                put(client, h, f"counter-{i}", f"{name}-{i}", **{"If-Match": tags[i]})
                for i in range(pairs)
                for client, name in ((a, "a"), (b, "b"))
            )
        )
        for i in range(pairs):
            ra, rb = writes[2 * i], writes[2 * i + 1]
            assert sorted((ra.status_code, rb.status_code)) == [200, 412], (i, ra.text, rb.text)
            winner, loser = (ra, rb) if ra.status_code == 200 else (rb, ra)
            assert_envelope(loser, 412, "precondition_failed")
            got = await a.get(f"{P}/cache/counter-{i}", headers=h)
            assert got.json()["value"] == winner.json()["value"]
            assert got.headers["ETag"] == winner.headers["ETag"]


async def _list_all(
    client: httpx.AsyncClient, h: dict[str, str], prefix: str, limit: int
) -> list[list[dict]]:
    pages, cursor = [], None
    while True:
        params: dict[str, str | int] = {"prefix": prefix, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        r = await client.get(f"{P}/cache", params=params, headers=h)
        assert r.status_code == 200, r.text
        pages.append(r.json()["items"])
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50


async def test_listing_pages_by_prefix_over_only_the_callers_own_keys(task_client, auth) -> None:
    dan, eve = auth("list-dan", "cache"), auth("list-eve", "cache")
    dan_keys = [f"pfx:{i:04d}" for i in range(250)]
    for start in range(0, 250, 100):
        body = {"set": {k: {"value": {"n": k}, "ttl": 600} for k in dan_keys[start : start + 100]}}
        r = await task_client.post(f"{P}/cache-batch/", json=body, headers=dan)
        assert r.status_code == 200 and r.json()["set"] == len(body["set"]), r.text
    for k in ("other:1", "pfw", "pfx"):
        assert (await put(task_client, dan, k, 1)).status_code == 200
    eve_keys = [f"pfx:{i:04d}" for i in range(0, 250, 7)] + ["pfx:eve-only"]
    r = await task_client.post(
        f"{P}/cache-batch", json={"set": {k: {"value": "eve"} for k in eve_keys}}, headers=eve
    )
    assert r.status_code == 200, r.text
    assert (await put(task_client, dan, "pfx:zz-short", 1)).status_code == 200
    await task_client.put(f"{P}/cache/pfx:zz-gone", json={"value": 1, "ttl": 1}, headers=dan)
    await asyncio.sleep(1.2)  # expired, and no write of Dan's since has pruned it: the listing skips it

    pages = await _list_all(task_client, dan, "pfx:", 100)
    assert [len(p) for p in pages] == [100, 100, 51]
    keys = [item["key"] for page in pages for item in page]
    assert keys == [*dan_keys, "pfx:zz-short"]
    first = pages[0][0]
    assert first["size"] == len(orjson.dumps({"n": "pfx:0000"})) and 590 <= first["ttl"] <= 600
    # Eve sees her own keys under the same prefix, and none of Dan's.
    eve_listed = [i["key"] for page in await _list_all(task_client, eve, "pfx:", 1000) for i in page]
    assert eve_listed == sorted(eve_keys)
    # No prefix: everything of Dan's, in key order.
    everything = [i["key"] for page in await _list_all(task_client, dan, "", 1000) for i in page]
    assert everything == sorted([*dan_keys, "other:1", "pfw", "pfx", "pfx:zz-short"])


async def test_listing_refuses_bad_cursors_and_limits_with_422(task_client, auth) -> None:
    h = auth("list-fay", "cache")
    for i in range(3):
        assert (await put(task_client, h, f"a:{i}", i)).status_code == 200
    r = await task_client.get(f"{P}/cache/", params={"prefix": "a:", "limit": 2}, headers=h)
    assert r.status_code == 200 and [i["key"] for i in r.json()["items"]] == ["a:0", "a:1"]
    cursor = r.json()["next_cursor"]
    r = await task_client.get(f"{P}/cache/", params={"prefix": "a:", "cursor": cursor}, headers=h)
    assert [i["key"] for i in r.json()["items"]] == ["a:2"] and r.json()["next_cursor"] is None
    forged = base64.urlsafe_b64encode(orjson.dumps({"p": "a:", "a": "../t:rec"})).decode()
    for params in (
        {"prefix": "b:", "cursor": cursor},  # another prefix's cursor
        {"prefix": "a:", "cursor": "!!not-base64!!"},
        {"prefix": "a:", "cursor": base64.urlsafe_b64encode(b"[1,2]").decode()},
        {"prefix": "a:", "cursor": forged},
    ):
        assert_envelope(await task_client.get(f"{P}/cache", params=params, headers=h), 422, "invalid_cursor")
    for params in ({"limit": 0}, {"limit": 1001}, {"prefix": "a b"}):
        assert_envelope(await task_client.get(f"{P}/cache", params=params, headers=h), 422)
    r = await task_client.get(f"{P}/cache", params={"limit": 1000}, headers=h)
    assert r.status_code == 200 and len(r.json()["items"]) == 3
    assert_envelope(await task_client.get(f"{P}/cache", headers=auth("list-fay", "tasks")), 403)


async def test_listing_rebuilds_a_missing_name_index(task_client, auth) -> None:
    """Entries written before the name index existed (or whose index an LRU Redis evicted) are
    listed from the expiry index, and the next write rebuilds the name index."""
    h = auth("list-gus", "cache")
    for k in ("b", "a", "c"):
        assert (await put(task_client, h, k, k)).status_code == 200
    async with aioredis.Redis.from_url(os.environ["REDIS_URL"]) as client:
        assert await client.zcard("cache-quota:list-gus:names") == 3
        await client.delete("cache-quota:list-gus:names")
        r = await task_client.get(f"{P}/cache", params={"limit": 2}, headers=h)
        assert [i["key"] for i in r.json()["items"]] == ["a", "b"]
        r = await task_client.get(f"{P}/cache", params={"cursor": r.json()["next_cursor"]}, headers=h)
        assert [i["key"] for i in r.json()["items"]] == ["c"]
        assert (await put(task_client, h, "d", "d")).status_code == 200
        assert await client.zrange("cache-quota:list-gus:names", 0, -1) == [b"a", b"b", b"c", b"d"]


async def test_cache_batch_reads_before_it_writes_and_applies_sets_and_deletes(task_client, auth) -> None:
    h = auth("batch-hal", "cache")
    for k, v in (("a", 1), ("b", 2)):
        assert (await put(task_client, h, k, v)).status_code == 200
    body = {
        "get": ["a", "b", "missing", "c", "a"],
        "set": {"c": {"value": {"three": 3}, "ttl": 60}, "a": {"value": 10}},
        "delete": ["b", "nope"],
    }
    r = await task_client.post(f"{P}/cache-batch/", json=body, headers=h)
    assert r.status_code == 200, r.text
    assert r.json() == {"values": {"a": 1, "b": 2, "missing": None, "c": None}, "set": 2, "deleted": 1}
    assert (await task_client.get(f"{P}/cache/a", headers=h)).json()["value"] == 10
    assert_envelope(await task_client.get(f"{P}/cache/b", headers=h), 404)
    c = (await task_client.get(f"{P}/cache/c", headers=h)).json()
    assert c["value"] == {"three": 3} and 55 <= c["ttl"] <= 60
    listed = (await task_client.get(f"{P}/cache", headers=h)).json()["items"]
    assert [i["key"] for i in listed] == ["a", "c"]
    r = await task_client.post(f"{P}/cache-batch", json={"get": ["a", "c"]}, headers=h)
    assert r.json() == {"values": {"a": 10, "c": {"three": 3}}, "set": 0, "deleted": 0}


async def test_cache_batch_holds_at_most_100_keys_and_the_put_limits(task_client, auth) -> None:
    h = auth("batch-ida", "cache")
    hundred = {"get": [f"g{i}" for i in range(40)], "set": {f"s{i}": {"value": i} for i in range(30)}}
    hundred["delete"] = [f"d{i}" for i in range(30)]
    r = await task_client.post(f"{P}/cache-batch/", json=hundred, headers=h)
    assert r.status_code == 200 and r.json()["set"] == 30, r.text
    over = {**hundred, "delete": [f"d{i}" for i in range(31)]}
    assert_envelope(
        await task_client.post(f"{P}/cache-batch/", json=over, headers=h), 422, "batch_too_many_keys"
    )
    r = await task_client.post(f"{P}/cache-batch/", json={"get": [f"k{i}" for i in range(101)]}, headers=h)
    assert_envelope(r, 422)
    cases = [
        ({"set": {"x": {"value": 1}}, "delete": ["x"]}, 422, "batch_conflict"),
        ({"set": {"bad key": {"value": 1}}}, 422, "invalid_key"),
        ({"get": ["../t:rec:x"]}, 422, "invalid_key"),
        ({"set": {"x": {"value": 1, "ttl": 30 * 24 * 3600 + 1}}}, 422, "invalid_ttl"),
        ({"set": {"x": {"value": "v" * (1024 * 1024)}}}, 413, "value_too_large"),
        ({"sett": {}}, 422, None),
    ]
    for body, status, code in cases:
        assert_envelope(await task_client.post(f"{P}/cache-batch/", json=body, headers=h), status, code)
    assert_envelope(await task_client.get(f"{P}/cache/x", headers=h), 404)
    assert_envelope(
        await task_client.post(f"{P}/cache-batch/", json={}, headers=auth("batch-ida", "tasks")), 403
    )


async def test_openapi_shows_the_cache_limits_and_answers(task_client) -> None:
    paths = (await task_client.get("/openapi.json")).json()["paths"]
    put_answers = paths[f"{P}/cache/{{key}}"]["put"]["responses"]
    assert {"200", "400", "403", "412", "413", "422"} <= set(put_answers)
    # Every route that takes If-Match / If-None-Match says what a malformed one gets.
    assert {"204", "400", "412"} <= set(paths[f"{P}/cache/{{key}}"]["delete"]["responses"])
    assert {"200", "304", "400"} <= set(paths[f"{P}/cache/{{key}}"]["get"]["responses"])
    assert put_answers["403"]["description"] == "The token lacks the 'cache' scope."
    listing = paths[f"{P}/cache/"]["get"]
    limit = next(p for p in listing["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 1000 and limit["schema"]["default"] == 100
    batch = paths[f"{P}/cache-batch/"]["post"]
    assert {"200", "413", "422"} <= set(batch["responses"])
    assert "100" in batch["responses"]["422"]["description"]


async def test_delete_with_if_match_and_get_with_if_none_match(task_client, auth) -> None:
    h = auth("etag-dee", "cache")
    old = (await put(task_client, h, "lease", "mine")).headers["ETag"]
    new = (await put(task_client, h, "lease", "theirs")).headers["ETag"]
    # A lease released only if it is still the one we hold: it is not, so 412 and it stays.
    r = await task_client.delete(f"{P}/cache/lease", headers={**h, "If-Match": old})
    assert_envelope(r, 412, "precondition_failed")
    # An unchanged value is 304 with its ETag and no body; a changed one is 200.
    r = await task_client.get(f"{P}/cache/lease", headers={**h, "If-None-Match": f"{old}, W/{new}"})
    assert r.status_code == 304 and r.headers["ETag"] == new and r.content == b""
    r = await task_client.get(f"{P}/cache/lease", headers={**h, "If-None-Match": old})
    assert r.status_code == 200 and r.json()["value"] == "theirs"
    assert (await task_client.delete(f"{P}/cache/lease", headers={**h, "If-Match": new})).status_code == 204
    assert_envelope(await task_client.get(f"{P}/cache/lease", headers=h), 404)
    assert_envelope(await task_client.delete(f"{P}/cache/lease", headers={**h, "If-Match": "*"}), 412)
    # A malformed condition is 400 on each of them, as the schema says; the value stays.
    await put(task_client, h, "lease", "kept")
    r = await task_client.delete(f"{P}/cache/lease", headers={**h, "If-Match": "no-quotes"})
    assert_envelope(r, 400, "invalid_precondition")
    r = await task_client.get(f"{P}/cache/lease", headers={**h, "If-None-Match": "no-quotes"})
    assert_envelope(r, 400, "invalid_precondition")
    assert (await task_client.get(f"{P}/cache/lease", headers=h)).json()["value"] == "kept"


async def test_cache_batch_reads_at_most_16_values_worth_of_bytes(task_client, auth) -> None:
    h = auth("batch-jo", "cache")
    full = "x" * (1024 * 1024 - 2)  # 1 MiB of JSON each
    answers = await asyncio.gather(*(put(task_client, h, f"big{i}", full) for i in range(17)))
    assert [r.status_code for r in answers] == [200] * 17
    body = {"get": [f"big{i}" for i in range(17)], "set": {"small": {"value": 1}}}
    r = await task_client.post(f"{P}/cache-batch/", json=body, headers=h)
    assert_envelope(r, 413, "batch_too_large")
    assert_envelope(await task_client.get(f"{P}/cache/small", headers=h), 404)  # nothing applied
    r = await task_client.post(f"{P}/cache-batch/", json={"get": ["big0", "big1"]}, headers=h)
    assert r.status_code == 200 and r.json()["values"]["big1"] == full
