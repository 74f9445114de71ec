"""The endpoints of the cache: keys, conditional writes, listing and batches."""

from __future__ import annotations

from typing import Any

import httpx

from smartapp._bind import endpoint, paged
from smartapp._call import Call, Pages, model, nothing, present, seg
from smartapp._models import CacheBatchResult, CacheEntry, CacheItem, CacheListing


def _entry(r: httpx.Response) -> CacheEntry:
    entry = CacheEntry.model_validate(r.json())
    entry._etag = r.headers.get("ETag")
    return entry


def _listing(prefix: str, cursor: str | None, limit: int | None) -> Call[CacheListing]:
    params = present(prefix=prefix or None, cursor=cursor, limit=limit)
    return Call("GET", "/cache/", model(CacheListing), params=params)


class CacheAPI:
    @endpoint
    def cache_get(self, key: str) -> Call[CacheEntry]:
        """`GET /cache/{key}`: the value, its seconds left, and `.etag` for a conditional put."""
        return Call("GET", f"/cache/{seg(key)}", _entry)

    @endpoint
    def cache_put(
        self,
        key: str,
        value: Any,
        *,
        ttl: int | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> Call[CacheEntry]:
        """`PUT /cache/{key}`; `if_match=entry.etag` writes only over that version and
        `if_none_match="*"` only creates: `PreconditionFailed` (412) otherwise."""
        body = {"value": value, **present(ttl=ttl)}
        headers = present(**{"If-Match": if_match, "If-None-Match": if_none_match})
        return Call("PUT", f"/cache/{seg(key)}", _entry, body, extra_headers=headers)

    @endpoint
    def cache_delete(self, key: str) -> Call[None]:
        return Call("DELETE", f"/cache/{seg(key)}", nothing)

    @endpoint
    def cache_list(
        self, prefix: str = "", *, cursor: str | None = None, limit: int | None = None
    ) -> Call[CacheListing]:
        """`GET /cache/`: one page of your keys in key order; `next_cursor` for the next."""
        return _listing(prefix, cursor, limit)

    @paged
    def iter_cache(self, prefix: str = "", *, page_size: int | None = None) -> Pages[CacheItem]:
        """Every key under `prefix`, following `next_cursor` page after page (`page_size` keys a request)."""
        return Pages(
            lambda cursor: _listing(prefix, cursor, page_size).then(
                lambda page: (page.items, page.next_cursor)
            )
        )

    @endpoint
    def cache_batch(
        self,
        get: list[str] | None = None,
        set: dict[str, Any] | None = None,
        delete: list[str] | None = None,
        *,
        ttl: int | None = None,
    ) -> Call[CacheBatchResult]:
        """`POST /cache-batch/`: read, store (each with `ttl`) and delete keys in one atomic step."""
        body: dict[str, Any] = {}
        if get:
            body["get"] = list(get)
        if set:
            each = present(ttl=ttl)
            body["set"] = {k: {"value": v, **each} for k, v in set.items()}
        if delete:
            body["delete"] = list(delete)
        return Call("POST", "/cache-batch/", model(CacheBatchResult), body)
