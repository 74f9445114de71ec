"""The per-user JSON cache: every entry expires, and each user has a quota of keys and bytes.

Layout (in the cache's Redis, `CACHE_REDIS_URL`, by default the platform's own):
`cache:{owner}:{key}` the value; `cache-quota:{owner}:index` a zset of the user's keys by
expiry; `cache-quota:{owner}:sizes` a hash of their sizes plus their sum under `#bytes`;
`cache-quota:{owner}:names` the same keys at score 0, so a prefix listing is a ZRANGEBYLEX
of the user's own keys, never a SCAN of the keyspace. Owners are percent-quoted, so no
owner's keys can reach another's or any internal record.

Each write, delete, listing and batch is one Lua script (lua/cache_*.lua), so the quota check,
the If-Match check and the write are one atomic step however many API replicas there are, and
expired entries are forgotten lazily by the next write, so the counts are exact without a
sweeper. If the cache's Redis evicts a value early (allkeys-lru), its share stays counted until
its TTL would have passed: the quota errs on the side of the platform.

An entry's ETag is the SHA-1 of its stored bytes (the JSON of the value), computed by Redis
inside the conditional write (`redis.sha1hex`) and by hashlib on a read: a strong validator
that needs no state of its own, so it cannot drift from the value or be evicted apart from it.
Two writes of the same bytes share an ETag, which is what If-Match needs: a client whose
update was computed from those bytes loses nothing by overwriting them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
import redis.asyncio as aioredis

from shared._errors import BadRequest, PayloadTooLarge, PreconditionFailed, Unprocessable
from shared._lua import read_lua

CACHE_KEY_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,200}$")
CACHE_PREFIX_RE = re.compile(r"^[A-Za-z0-9._:\-]{0,200}$")
# One cache-batch: at most this many keys across get, set and delete (API.md "More of the cache").
BATCH_MAX_KEYS = 100
# A batch's reads together: at most this many values' worth, so one answer is never 100 MiB.
BATCH_GET_VALUES = 16
LIST_DEFAULT_LIMIT = 100
LIST_MAX_LIMIT = 1000
_ETAG_RE = re.compile(r'\s*(?:W/)?"([\x21\x23-\x7e]*)"\s*')


def _script(name: str) -> str:
    """The script in `name`, its shebang (Redis 7 flags) first, the shared helpers (cache_common.lua) next."""
    shebang, _, body = read_lua("shared", name).partition("\n")
    if not shebang.startswith("#!lua"):
        raise ValueError(f"{name} must start with a #!lua line")
    return f"{shebang}\n{read_lua('shared', 'cache_common.lua')}{body}"


# Read once at import; redis-py loads each into Redis once (EVALSHA, SCRIPT LOAD on a miss).
_PUT_LUA = _script("cache_put.lua")
_DELETE_LUA = _script("cache_delete.lua")
_LIST_LUA = _script("cache_list.lua")
_BATCH_LUA = _script("cache_batch.lua")


@dataclass(frozen=True, slots=True)
class CacheLimits:
    """API.md "Fair share": every entry expires; values and each user's total are bounded."""

    default_ttl: int = 86_400
    max_ttl: int = 30 * 24 * 3600
    max_value_bytes: int = 1024 * 1024
    max_keys_per_user: int = 10_000
    max_bytes_per_user: int = 64 * 1024 * 1024


def cache_key(owner: str, key: str) -> str:
    """The Redis key of a user's cache entry; owners are quoted so ':' cannot cross namespaces."""
    if not CACHE_KEY_RE.fullmatch(key):
        raise Unprocessable(
            "Cache keys are 1-200 characters of letters, digits and . _ : -", code="invalid_key"
        )
    return f"cache:{quote(owner, safe='')}:{key}"


def _quota_keys(owner: str) -> list[str]:
    prefix = f"cache-quota:{quote(owner, safe='')}"
    return [f"{prefix}:index", f"{prefix}:sizes", f"{prefix}:names"]


def etag_of(raw: bytes) -> str:
    """The entity tag of stored bytes, unquoted; the header carries it quoted (RFC 9110 8.8.3)."""
    return hashlib.sha1(raw, usedforsecurity=False).hexdigest()


def parse_etag_condition(header: str | None) -> str | list[str] | None:
    """An If-Match / If-None-Match value: "*", the list of entity tags (unquoted), or None.

    A weak tag (W/"...") keeps its prefix, which no tag of ours has, so under If-Match's strong
    comparison it never matches; If-None-Match compares weakly and strips it (`_weak`). A header
    that is not "*" or a list of quoted tags is 400 `invalid_precondition`.
    """
    if header is None:
        return None
    if header.strip() == "*":
        return "*"
    tags: list[str] = []
    for part in header.split(","):
        if not part.strip():
            continue
        m = _ETAG_RE.fullmatch(part)
        if m is None:
            raise BadRequest(
                'If-Match and If-None-Match take "*" or a list of quoted entity tags (RFC 9110).',
                code="invalid_precondition",
            )
        tags.append(("W/" if part.strip().startswith("W/") else "") + m.group(1))
    if not tags:
        raise BadRequest("An empty If-Match or If-None-Match header.", code="invalid_precondition")
    return tags


def _weak(tags: str | list[str] | None) -> str | list[str] | None:
    """If-None-Match's weak comparison (RFC 9110 13.1.2): W/"x" names the same as "x"."""
    return [t.removeprefix("W/") for t in tags] if isinstance(tags, list) else tags


def not_modified(header: str | None, etag: str) -> bool:
    """Whether a GET's If-None-Match names etag: then the answer is 304."""
    tags = _weak(parse_etag_condition(header))
    if tags is None:
        return False
    return tags == "*" or etag in tags


def _encode_cursor(prefix: str, after: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"p": prefix, "a": after})).decode().rstrip("=")


def _decode_cursor(cursor: str, prefix: str) -> str:
    """The key a listing continues after. Any cursor that we did not hand out for this prefix is
    422: a cursor only names a position among the caller's own keys, so it needs no signature
    (no cursor can reach another user's keys), only validation.
    """
    invalid = Unprocessable(
        "cursor is not a next_cursor from a listing with this prefix.", code="invalid_cursor"
    )
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise invalid from None
    if not isinstance(data, dict) or data.get("p") != prefix:
        raise invalid
    after = data.get("a")
    if not isinstance(after, str) or not CACHE_KEY_RE.fullmatch(after) or not after.startswith(prefix):
        raise invalid
    return after


@dataclass(frozen=True, slots=True)
class CacheValue:
    """A value as read: the JSON value, its seconds left, and its entity tag (unquoted)."""

    value: Any
    ttl: int | None
    etag: str


@dataclass(frozen=True, slots=True)
class CacheWrite:
    """What a write stored: the TTL it got and the new entity tag (unquoted)."""

    ttl: int
    etag: str


@dataclass(frozen=True, slots=True)
class CachePage:
    """One page of a listing: items {"key", "ttl", "size"} and the cursor to the next (None: last)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


class Cache:
    """JSON values with a bounded TTL, each user in a namespace of their own, within a quota.

    Internal records live under other prefixes (t:, celery-task-meta-, ...): every key this
    class touches starts with 'cache:' or 'cache-quota:', so no cache call can reach them.
    """

    def __init__(self, client: aioredis.Redis, limits: CacheLimits | None = None) -> None:
        self.client = client
        self.limits = limits or CacheLimits()
        self._put = client.register_script(_PUT_LUA)
        self._delete = client.register_script(_DELETE_LUA)
        self._list = client.register_script(_LIST_LUA)
        self._batch = client.register_script(_BATCH_LUA)

    async def get(self, owner: str, key: str) -> CacheValue | None:
        rkey = cache_key(owner, key)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(rkey)
            pipe.ttl(rkey)
            raw, ttl = await pipe.execute()
        if raw is None:
            return None
        return CacheValue(orjson.loads(raw), ttl if ttl >= 0 else None, etag_of(raw))

    def ttl_for(self, ttl: int | None) -> int:
        """The TTL a write gets: the default when none is given; 422 past the maximum."""
        if ttl is None:
            return self.limits.default_ttl
        if ttl < 1 or ttl > self.limits.max_ttl:
            raise Unprocessable(
                f"ttl is 1 to {self.limits.max_ttl} seconds (CACHE_MAX_TTL).", code="invalid_ttl"
            )
        return ttl

    def _raw(self, value: Any) -> bytes:
        raw = orjson.dumps(value)
        if len(raw) > self.limits.max_value_bytes:
            raise PayloadTooLarge(
                f"Cache values are at most {self.limits.max_value_bytes} bytes of JSON "
                "(CACHE_MAX_VALUE_BYTES).",
                code="value_too_large",
            )
        return raw

    def _quota_refused(self, answer: Mapping[str, Any]) -> PayloadTooLarge:
        if answer["limit"] == "keys":
            what = f"{answer['max']} keys (CACHE_MAX_KEYS_PER_USER)"
        else:
            what = f"{answer['max']} bytes (CACHE_MAX_BYTES_PER_USER)"
        return PayloadTooLarge(
            f"Your cache holds at most {what}; delete keys or let them expire first.",
            code="cache_quota_exceeded",
        )

    async def set(
        self,
        owner: str,
        key: str,
        value: Any,
        ttl: int | None,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> CacheWrite:
        """Store value if the conditions hold (the raw If-Match / If-None-Match headers).

        412 when a condition fails, 413 past the value size or the user's quota. The conditions,
        the quota and the write are one script: no write can come between check and store.
        """
        seconds = self.ttl_for(ttl)
        rkey = cache_key(owner, key)
        match, none_match = parse_etag_condition(if_match), _weak(parse_etag_condition(if_none_match))
        raw = self._raw(value)
        args: dict[str, Any] = {
            "member": key,
            "ttl_ms": seconds * 1000,
            "max_keys": self.limits.max_keys_per_user,
            "max_bytes": self.limits.max_bytes_per_user,
        }
        if match is not None:
            args["if_match"] = match
        if none_match is not None:
            args["if_none_match"] = none_match
        answer = orjson.loads(
            await self._put(keys=[*_quota_keys(owner), rkey], args=[orjson.dumps(args), raw])
        )
        if not answer["ok"]:
            if answer.get("precondition"):
                raise PreconditionFailed(
                    "The entry changed since you read it (If-Match), or exists already "
                    "(If-None-Match); read it again.",
                )
            raise self._quota_refused(answer)
        return CacheWrite(seconds, etag_of(raw))

    async def delete(self, owner: str, key: str, *, if_match: str | None = None) -> bool:
        """Delete key (if its ETag matches If-Match, else 412); whether it existed."""
        rkey = cache_key(owner, key)
        args: dict[str, Any] = {"member": key}
        match = parse_etag_condition(if_match)
        if match is not None:
            args["if_match"] = match
        answer = orjson.loads(await self._delete(keys=[*_quota_keys(owner), rkey], args=[orjson.dumps(args)]))
        if answer.get("precondition"):
            raise PreconditionFailed("The entry changed since you read it (If-Match); read it again.")
        return bool(answer["deleted"])

    async def list_keys(
        self, owner: str, prefix: str = "", cursor: str | None = None, limit: int = LIST_DEFAULT_LIMIT
    ) -> CachePage:
        """One page of the owner's live keys starting with prefix, in key order."""
        if not CACHE_PREFIX_RE.fullmatch(prefix):
            raise Unprocessable(
                "prefix is up to 200 characters of letters, digits and . _ : -", code="invalid_prefix"
            )
        if not 1 <= limit <= LIST_MAX_LIMIT:
            raise Unprocessable(f"limit is 1 to {LIST_MAX_LIMIT}.", code="invalid_limit")
        args: dict[str, Any] = {"prefix": prefix, "limit": limit}
        if cursor:
            args["after"] = _decode_cursor(cursor, prefix)
        answer = orjson.loads(await self._list(keys=_quota_keys(owner), args=[orjson.dumps(args)]))
        after = answer.get("next")
        # cjson writes an empty array as {}.
        items = answer["items"] or []
        return CachePage(items, _encode_cursor(prefix, after) if after else None)

    async def batch(
        self,
        owner: str,
        gets: Sequence[str] = (),
        sets: Mapping[str, tuple[Any, int | None]] | None = None,
        deletes: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Read, delete and store up to BATCH_MAX_KEYS keys in one atomic step.

        Reads see the entries as they were before the batch; if the sets pass the quota (413
        `cache_quota_exceeded`) or the reads pass BATCH_GET_VALUES values' bytes (413
        `batch_too_large`), nothing is changed.
        """
        gets, dels = list(dict.fromkeys(gets)), list(dict.fromkeys(deletes))
        sets = sets or {}
        if len(gets) + len(sets) + len(dels) > BATCH_MAX_KEYS:
            raise Unprocessable(
                f"A batch holds at most {BATCH_MAX_KEYS} keys across get, set and delete.",
                code="batch_too_many_keys",
            )
        both = sorted(sets.keys() & dels)
        if both:
            raise Unprocessable(
                f"A key is either set or deleted in one batch, not both: {both[0]!r}.",
                code="batch_conflict",
            )
        prepared = [
            (key, cache_key(owner, key), self.ttl_for(ttl), self._raw(value))
            for key, (value, ttl) in sets.items()
        ]
        max_get_bytes = BATCH_GET_VALUES * self.limits.max_value_bytes
        args = {
            "get": gets,
            "set": [{"member": key, "ttl_ms": seconds * 1000} for key, _, seconds, _ in prepared],
            "delete": dels,
            "max_keys": self.limits.max_keys_per_user,
            "max_bytes": self.limits.max_bytes_per_user,
            "max_get_bytes": max_get_bytes,
        }
        keys = [
            *_quota_keys(owner),
            *(cache_key(owner, k) for k in gets),
            *(rkey for _, rkey, _, _ in prepared),
            *(cache_key(owner, k) for k in dels),
        ]
        reply = await self._batch(keys=keys, args=[orjson.dumps(args), *(raw for *_, raw in prepared)])
        answer = orjson.loads(reply[0])
        if not answer["ok"]:
            if answer["limit"] == "get_bytes":
                raise PayloadTooLarge(
                    f"A batch reads at most {max_get_bytes} bytes of values together; "
                    "read fewer keys at once.",
                    code="batch_too_large",
                )
            raise self._quota_refused(answer)
        values = {
            k: (orjson.loads(raw) if raw is not None else None)
            for k, raw in zip(gets, reply[1:], strict=True)
        }
        return {"values": values, "set": answer["set"], "deleted": answer["deleted"]}
