"""One OpenAPI document for the platform, merged from the services' own documents.

Fetched lazily and cached. A service that is down keeps its last good document (or is
named under `x-unavailable-services` until it answers), so /docs never fails because one
service does.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from gateway.routing import Service
from shared import API_PREFIX, MAX_HEADER_VALUE_BYTES, MAX_JSON_DEPTH

log = logging.getLogger("gateway.openapi")

RETRY_MISSING_SECONDS = 5.0
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=3)

GATEWAY_PATHS: dict[str, Any] = {
    "/health": {
        "get": {
            "tags": ["operations"],
            "summary": "Alive: the gateway process answers",
            "operationId": "gateway_health",
            "security": [],
            "responses": {"200": {"description": "The gateway is alive."}},
        }
    },
    "/ready": {
        "get": {
            "tags": ["operations"],
            "summary": "Ready: the services, Redis and RabbitMQ (through the services) answer",
            "operationId": "gateway_ready",
            "security": [],
            "responses": {
                "200": {"description": "Every dependency answers; the body names each one."},
                "503": {"description": "At least one dependency does not answer; the body names it."},
            },
        }
    },
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "request_id"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "request_id": {"type": ["string", "null"]},
                "detail": {},
            },
        }
    },
}


def _rename_refs(node: Any, section: str, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                prefix = f"#/components/{section}/"
                if value.startswith(prefix) and value[len(prefix) :] in renames:
                    value = prefix + renames[value[len(prefix) :]]
                out[key] = value
            else:
                out[key] = _rename_refs(value, section, renames)
        return out
    if isinstance(node, list):
        return [_rename_refs(v, section, renames) for v in node]
    return node


def merge_documents(docs: dict[str, dict[str, Any]], missing: list[str]) -> dict[str, Any]:
    """Merge service documents: public paths only; clashing component names get a service prefix."""
    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "smart_application",
            "version": "0.1.0",
            "description": (
                "Every public endpoint of the platform, served through the gateway. "
                f"All API paths are under `{API_PREFIX}` and need `Authorization: Bearer <JWT>`.\n\n"
                "Limits every request meets (answered with the error envelope): exactly one "
                "`Authorization` header (else 400 `duplicate_authorization`); no other header value over "
                f"{MAX_HEADER_VALUE_BYTES} bytes (431); JSON bodies nested at most {MAX_JSON_DEPTH} "
                "levels deep (422 `json_too_deep`) with integers between -2^63 and 2^63-1 (422 "
                "`integer_out_of_range`); bodies up to 1 MiB by default (16 MiB for "
                "`batch-notifications`, else 413). Too many requests: 429 with `Retry-After`."
            ),
        },
        "paths": copy.deepcopy(GATEWAY_PATHS),
        "components": {
            "schemas": {"GatewayError": ERROR_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
        "tags": [],
    }
    if missing:
        merged["info"]["x-unavailable-services"] = sorted(missing)
        merged["info"]["description"] += (
            " Not shown now because they did not answer: " + ", ".join(sorted(missing)) + "."
        )
    components: dict[str, dict[str, Any]] = merged["components"]
    seen_tags: set[str] = set()
    for service, original in docs.items():
        doc = original
        prefix = "".join(part.title() for part in service.split("-"))
        for section, entries in (original.get("components") or {}).items():
            if not isinstance(entries, dict):
                continue
            target = components.setdefault(section, {})
            renames: dict[str, str] = {}
            for name, value in entries.items():
                if name in target and target[name] != value:
                    renames[name] = f"{prefix}_{name}"
            if renames:
                doc = _rename_refs(doc, section, renames)
            for name, value in (doc.get("components") or {}).get(section, {}).items():
                target.setdefault(renames[name] if name in renames else str(name), value)
        for path, item in (doc.get("paths") or {}).items():
            if isinstance(path, str) and path.startswith(API_PREFIX):
                # The services' own /health, /ready and /metrics are not public.
                merged["paths"].setdefault(path, {}).update(item)
        for tag in doc.get("tags") or []:
            if isinstance(tag, dict) and tag.get("name") not in seen_tags:
                seen_tags.add(tag["name"])
                merged["tags"].append(tag)
    if not merged["tags"]:
        del merged["tags"]
    return merged


class OpenAPIMerger:
    def __init__(
        self,
        services: dict[Service, str],
        session: Callable[[], aiohttp.ClientSession | None],
        cache_seconds: float,
    ) -> None:
        self.services = services
        self._session = session
        self.cache_seconds = cache_seconds
        self._docs: dict[str, dict[str, Any]] = {}
        self._merged: dict[str, Any] | None = None
        self._fresh_until = 0.0
        self._lock = asyncio.Lock()

    async def document(self) -> dict[str, Any]:
        if self._merged is not None and time.monotonic() < self._fresh_until:
            return self._merged
        async with self._lock:
            if self._merged is None or time.monotonic() >= self._fresh_until:
                await self.refresh()
            assert self._merged is not None
            return self._merged

    async def refresh(self) -> None:
        results = await asyncio.gather(*(self._fetch(s, url) for s, url in self.services.items()))
        missing = []
        for service, doc in zip(self.services, results, strict=True):
            if doc is not None:
                self._docs[service] = doc
            elif service not in self._docs:
                missing.append(str(service))
        self._merged = merge_documents({s: self._docs[s] for s in self.services if s in self._docs}, missing)
        stale = len(missing) or any(r is None for r in results)
        self._fresh_until = time.monotonic() + (RETRY_MISSING_SECONDS if stale else self.cache_seconds)

    async def _fetch(self, service: Service, base_url: str) -> dict[str, Any] | None:
        session = self._session()
        if session is None:
            return None
        try:
            async with session.get(f"{base_url}/openapi.json", timeout=FETCH_TIMEOUT) as resp:
                if resp.status != 200:
                    log.warning("openapi: %s answered %d", service, resp.status)
                    return None
                doc = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.info("openapi: %s unavailable (%s)", service, type(exc).__name__)
            return None
        return doc if isinstance(doc, dict) else None
