"""The cache API's request and response bodies (API.md "Cache", "More of the cache")."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared import BATCH_MAX_KEYS

TTL_DESCRIPTION = (
    "Seconds until it expires: 1 to CACHE_MAX_TTL (30 days); unset, CACHE_DEFAULT_TTL (one day). "
    "Every entry expires."
)


class CachePut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: Any
    ttl: int | None = Field(default=None, ge=1, description=TTL_DESCRIPTION)


class CacheEntry(BaseModel):
    key: str
    value: Any
    ttl: int | None = Field(description="Seconds left before it expires.")


class CacheItem(BaseModel):
    key: str = Field(description="The key as you wrote it.")
    ttl: int = Field(description="Seconds left before it expires.")
    size: int = Field(description="Bytes of the stored JSON value.")


class CacheListing(BaseModel):
    items: list[CacheItem]
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same `prefix`) for the next page; null on the last. "
        "A page may hold fewer than `limit` items and still have a next page."
    )


class CacheBatchSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: Any
    ttl: int | None = Field(default=None, ge=1, description=TTL_DESCRIPTION)


class CacheBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    get: list[str] = Field(default_factory=list, max_length=BATCH_MAX_KEYS, description="Keys to read.")
    set: dict[str, CacheBatchSet] = Field(
        default_factory=dict,
        max_length=BATCH_MAX_KEYS,
        description="Keys to store, each with its value and ttl.",
    )
    delete: list[str] = Field(default_factory=list, max_length=BATCH_MAX_KEYS, description="Keys to delete.")


class CacheBatchOut(BaseModel):
    values: dict[str, Any] = Field(
        description="Each `get` key's value as it was before this batch's writes; null when absent."
    )
    set: int = Field(description="How many keys were stored.")
    deleted: int = Field(description="How many of the `delete` keys existed and were deleted.")
