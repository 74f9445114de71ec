"""task-service's cache API: per-user JSON values with a TTL, ETags and conditional writes, a
prefix listing and batches (API.md "Cache", "Fair share", "More of the cache")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from shared import (
    API_PREFIX,
    BATCH_MAX_KEYS,
    CACHE_KEY_RE,
    LIST_DEFAULT_LIMIT,
    LIST_MAX_LIMIT,
    Cache,
    CacheUser,
    NotFound,
    app_state,
    not_modified,
    route,
)
from task_service.cache_schemas import CacheBatchIn, CacheBatchOut, CacheEntry, CacheListing, CachePut

router = APIRouter(prefix=API_PREFIX, tags=["cache"])
Namespace = Annotated[str | None, Query(description="Another user's namespace (admin only).", max_length=256)]
# Checked by the cache itself (invalid_key); stated here so the schema says what is accepted.
CacheKey = Annotated[
    str,
    Path(
        description="1-200 letters, digits and . _ : -",
        json_schema_extra={"pattern": CACHE_KEY_RE.pattern, "minLength": 1, "maxLength": 200},
    ),
]
IfMatch = Annotated[
    list[str] | None,
    Header(
        alias="If-Match",
        description='Write only if the entry\'s current ETag is one of these ("*": if it exists); '
        "otherwise 412.",
    ),
]
IfNoneMatch = Annotated[
    list[str] | None,
    Header(
        alias="If-None-Match",
        description='"*": create only, 412 if the key exists. A list of ETags: 412 if the current '
        "one is among them.",
    ),
]

# The answers of a conditional request (RFC 9110 13), for each route that takes one.
_MALFORMED = {400: {"description": "A malformed If-Match or If-None-Match (`invalid_precondition`)."}}
_FAILED = {412: {"description": "If-Match or If-None-Match does not hold (`precondition_failed`)."}}
_CONDITIONAL = {**_MALFORMED, **_FAILED}
_QUOTA = "The value past CACHE_MAX_VALUE_BYTES (`value_too_large`), or your cache past "
_QUOTA += "CACHE_MAX_KEYS_PER_USER keys or CACHE_MAX_BYTES_PER_USER bytes (`cache_quota_exceeded`)."
_OOM = {503: {"description": "The cache's Redis is out of memory or down; retry after Retry-After."}}


def _no_such_key() -> NotFound:
    return NotFound("No such cache key.", code="cache_key_not_found")


@dataclass(frozen=True, slots=True)
class Space:
    """The cache and the namespace (an owner's keys) a request works in."""

    cache: Cache
    owner: str


async def _space(request: Request, user: CacheUser, namespace: Namespace = None) -> Space:
    """Your own namespace, or with `namespace` an admin's pick; anyone else asking for another
    user's is answered as if the key did not exist. (The cache is read off the request rather
    than through a dependency of its own: each one is a solve_dependencies pass per request.)"""
    cache = app_state(request, "cache", Cache)
    if namespace is None or namespace == user.sub:
        return Space(cache, user.sub)
    if not user.is_admin:
        raise _no_such_key()
    return Space(cache, namespace)


CacheSpace = Annotated[Space, Depends(_space)]


def _header(values: list[str] | None) -> str | None:
    # A field sent on several lines is one comma-separated list (RFC 9110 5.3).
    return ", ".join(values) if values else None


def _quoted(etag: str) -> str:
    return f'"{etag}"'


@route(
    router,
    "GET",
    "/cache/",
    response_model=CacheListing,
    responses={422: {"description": "An invalid prefix, limit or cursor (`invalid_cursor`)."}},
)
async def cache_list(
    space: CacheSpace,
    prefix: Annotated[str, Query(max_length=200, description="Only keys that start with this.")] = "",
    cursor: Annotated[
        str | None, Query(max_length=1024, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=LIST_MAX_LIMIT)] = LIST_DEFAULT_LIMIT,
) -> dict[str, Any]:
    """Your keys in key order, with their seconds left and sizes, a page at a time.

    Lists only your own keys, from your own index (never a scan of other users' keys); expired
    keys are not listed. `limit` is 1 to 1000 (default 100). The cursor is opaque: use it with
    the same `prefix`; anything else is 422 `invalid_cursor`.
    """
    page = await space.cache.list_keys(space.owner, prefix, cursor, limit)
    return {"items": page.items, "next_cursor": page.next_cursor}


@route(
    router,
    "GET",
    "/cache/{key}",
    response_model=CacheEntry,
    responses={
        304: {"description": "If-None-Match names the current ETag: the value is unchanged."},
        **_MALFORMED,
    },
)
async def cache_get(
    key: CacheKey,
    space: CacheSpace,
    response: Response,
    if_none_match: Annotated[
        list[str] | None,
        Header(alias="If-None-Match", description="304 (no body) while the ETag is still one of these."),
    ] = None,
) -> Any:
    """Read a value from your cache namespace, with its remaining TTL in seconds and its ETag.

    The `ETag` header is a strong validator of the value (the hash of its stored JSON): send it
    back in `If-Match` to update the entry only if nobody changed it since, or in
    `If-None-Match` to be answered 304 while it is unchanged.
    """
    found = await space.cache.get(space.owner, key)
    if found is None:
        raise _no_such_key()
    etag = _quoted(found.etag)
    if not_modified(_header(if_none_match), found.etag):
        return Response(status_code=304, headers={"ETag": etag})
    response.headers["ETag"] = etag
    return {"key": key, "value": found.value, "ttl": found.ttl}


@route(
    router,
    "PUT",
    "/cache/{key}",
    response_model=CacheEntry,
    responses={
        **_CONDITIONAL,
        413: {"description": _QUOTA},
        422: {"description": "ttl past CACHE_MAX_TTL, or an invalid key."},
        **_OOM,
    },
)
async def cache_put(
    key: CacheKey,
    body: CachePut,
    space: CacheSpace,
    response: Response,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> dict[str, Any]:
    """Store any JSON value in your cache namespace; it expires after `ttl` seconds.

    Conditional writes: `If-Match: "<etag>"` (or a list, or `*`) writes only over that version,
    `If-None-Match: *` only creates; otherwise 412 `precondition_failed`. The check and the write
    are one atomic step, so of two writers holding the same ETag exactly one wins. The answer
    carries the new ETag.

    Limits (API.md "Fair share"): `ttl` at most CACHE_MAX_TTL (422); a value at most
    CACHE_MAX_VALUE_BYTES of JSON (413); per user CACHE_MAX_KEYS_PER_USER keys and
    CACHE_MAX_BYTES_PER_USER bytes (413 `cache_quota_exceeded`). A cache Redis that is out
    of memory answers 503 with Retry-After.
    """
    stored = await space.cache.set(
        space.owner,
        key,
        body.value,
        body.ttl,
        if_match=_header(if_match),
        if_none_match=_header(if_none_match),
    )
    response.headers["ETag"] = _quoted(stored.etag)
    return {"key": key, "value": body.value, "ttl": stored.ttl}


@route(router, "DELETE", "/cache/{key}", status_code=204, response_class=Response, responses=_CONDITIONAL)
async def cache_delete(key: CacheKey, space: CacheSpace, if_match: IfMatch = None) -> Response:
    """Delete a key from your cache namespace; with `If-Match`, only the version you read (else 412)."""
    if not await space.cache.delete(space.owner, key, if_match=_header(if_match)):
        raise _no_such_key()
    return Response(status_code=204)


@route(
    router,
    "POST",
    "/cache-batch/",
    response_model=CacheBatchOut,
    responses={
        413: {
            "description": _QUOTA + " Also the reads of one batch past 16 values' worth of bytes "
            "(`batch_too_large`). Nothing of the batch is applied."
        },
        422: {
            "description": f"More than {BATCH_MAX_KEYS} keys in all (`batch_too_many_keys`), a key "
            "both set and deleted (`batch_conflict`), an invalid key or ttl."
        },
        **_OOM,
    },
)
async def cache_batch(body: CacheBatchIn, space: CacheSpace) -> dict[str, Any]:
    """Read, store and delete up to 100 of your keys in one atomic step.

    `get` values are as they were before this batch's writes (null when absent). The batch is
    one Redis script: either all of its sets and deletes apply or, when the sets would pass
    your quota (413 `cache_quota_exceeded`), none does. TTL and value size limits are those of
    PUT. The request body is at most the gateway's MAX_BODY_BYTES (1 MiB).
    """
    return await space.cache.batch(
        space.owner,
        gets=body.get,
        sets={k: (s.value, s.ttl) for k, s in body.set.items()},
        deletes=body.delete,
    )
