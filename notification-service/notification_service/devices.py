"""Devices: where a user's notifications go (Web Push subscriptions and signed webhooks).

Layout: n:dev:{id} hash (device_id owner channel endpoint p256dh auth secret status
created_at disabled_reason); n:udev:{user} zset of the user's device ids by creation
time; n:uep:{user} hash target -> device_id, where the target is sha256(endpoint) of a push
subscription or sha256("webhook\n" + url) of a webhook. Registering the same endpoint or URL
again answers the device the user already has (refreshed), never a second one: one Lua
script (lua/device_register.lua) checks and writes, so even registrations at once make one.

A webhook's signing secret is kept sealed with the server secret (shared.Sealer) and bound
to its device id; it is unsealed only to sign deliveries, once per delivery run (the run keeps
the key in memory while it lasts, never in Redis or a log).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from redis.asyncio import Redis

from notification_service.ledger_keys import id_key, iso, user_key
from notification_service.scripts import lua
from notification_service.webpush import Subscription, b64url_decode, b64url_encode
from shared import Sealer, SealError

ACTIVE = "active"
DISABLED = "disabled"
# The HKDF info of the key that seals webhook secrets; changing it orphans every stored one.
WEBHOOK_SECRET_PURPOSE = "smart_application/notifications/webhook-secret/v1"  # noqa: S105 - a label


device_key = partial(id_key, "n:dev")
user_devices_key = partial(user_key, "n:udev")
endpoints_key = partial(user_key, "n:uep")


def endpoint_hash(endpoint: str) -> str:
    return hashlib.sha256(endpoint.encode()).hexdigest()


def target_hash(channel: str, endpoint: str) -> str:
    """The key of a device's target in n:uep:{user} (push endpoints keep their historic form)."""
    return endpoint_hash(endpoint) if channel == "webpush" else endpoint_hash(f"{channel}\n{endpoint}")


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# Read once at import; redis-py loads each into Redis once (EVALSHA, SCRIPT LOAD on a miss).
_REGISTER_LUA = lua("device_register.lua")
_PRUNE_LUA = lua("device_prune.lua")
_DISABLE_LUA = lua("device_disable.lua")
# Attempts at registering while other registrations of the same target move its mapping.
_REGISTER_TRIES = 5


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    owner: str
    channel: str
    endpoint: str
    created_at: str
    status: str = ACTIVE
    name: str | None = None
    p256dh: str = ""
    auth: str = ""
    # The `whsec_` signing secret as stored: sealed. Devices.signing_secret() opens it.
    sealed_secret: str = ""
    disabled_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    def subscription(self) -> Subscription:
        return Subscription(
            endpoint=self.endpoint, p256dh=b64url_decode(self.p256dh), auth=b64url_decode(self.auth)
        )

    def view(self) -> dict[str, Any]:
        """What the owner sees: never the auth secret or the signing secret."""
        out: dict[str, Any] = {
            "device_id": self.device_id,
            "channel": self.channel,
            "name": self.name,
            "created_at": self.created_at,
            "status": self.status,
        }
        if self.channel == "webpush":
            out["endpoint"] = self.endpoint
        else:
            out["url"] = self.endpoint
        if self.disabled_reason:
            out["disabled_reason"] = self.disabled_reason
        return out

    @classmethod
    def from_hash(cls, raw: dict[Any, Any]) -> Device:
        d = {_s(k): _s(v) for k, v in raw.items()}
        return cls(
            device_id=d["device_id"],
            owner=d["owner"],
            channel=d["channel"],
            endpoint=d["endpoint"],
            created_at=d["created_at"],
            status=d.get("status", ACTIVE),
            name=d.get("name") or None,
            p256dh=d.get("p256dh", ""),
            auth=d.get("auth", ""),
            sealed_secret=d.get("secret", ""),
            disabled_reason=d.get("disabled_reason") or None,
        )


class TooManyDevices(Exception):
    pass


class RegistrationContended(Exception):
    """The target's device kept changing under concurrent registrations and deletions."""


class DeviceSecretError(Exception):
    """A webhook device whose stored signing secret does not unseal; it cannot be signed for."""


class Devices:
    def __init__(self, client: Redis, max_per_user: int, server_secret: str) -> None:
        self.r = client
        self.max_per_user = max_per_user
        self._sealer = Sealer(server_secret, WEBHOOK_SECRET_PURPOSE)
        self._register_script = client.register_script(_REGISTER_LUA)
        self._prune = client.register_script(_PRUNE_LUA)
        self._disable = client.register_script(_DISABLE_LUA)

    async def add_webpush(self, owner: str, sub: Subscription, name: str | None) -> tuple[Device, bool]:
        """Register a subscription; the same endpoint again refreshes (and answers) that device.

        Returns the device and whether it was created.
        """
        keys = {"p256dh": b64url_encode(sub.p256dh), "auth": b64url_encode(sub.auth)}
        return await self._register(
            owner, "webpush", sub.endpoint, name, str(uuid.uuid4()), fields=keys, refresh=keys
        )

    async def add_webhook(self, owner: str, url: str, secret: str, name: str | None) -> tuple[Device, bool]:
        """Register a webhook; the same URL again answers that device (re-enabled, same secret).

        Returns the device and whether it was created (`secret` is used only then).
        """
        device_id = str(uuid.uuid4())
        # Bound to the device: copied onto another device's hash, it does not unseal.
        sealed = {"sealed_secret": self._sealer.seal(secret, associated_data=device_id)}
        return await self._register(owner, "webhook", url, name, device_id, fields=sealed, refresh={})

    async def _register(
        self,
        owner: str,
        channel: str,
        endpoint: str,
        name: str | None,
        device_id: str,
        *,
        fields: dict[str, str],
        refresh: dict[str, str],
    ) -> tuple[Device, bool]:
        """Store a new device with the channel's own `fields`, or, when the owner already has one
        for this target, refresh that one (re-enabled, renamed if named, plus `refresh`)."""
        device = Device(
            device_id=device_id,
            owner=owner,
            channel=channel,
            endpoint=endpoint,
            created_at=iso(time.time()),
            name=name,
            **fields,
        )
        refresh = {**refresh, "status": ACTIVE, "disabled_reason": "", **({"name": name} if name else {})}
        target = target_hash(device.channel, device.endpoint)
        args: dict[str, Any] = {
            "target": target,
            "device_id": device.device_id,
            "max_devices": self.max_per_user,
            "score": time.time(),
            "fields": {
                "device_id": device.device_id,
                "owner": owner,
                "channel": device.channel,
                "endpoint": device.endpoint,
                "created_at": device.created_at,
                "status": device.status,
                "name": device.name or "",
                "p256dh": device.p256dh,
                "auth": device.auth,
                "secret": device.sealed_secret,
            },
            "refresh": refresh,
        }
        for _ in range(_REGISTER_TRIES):
            seen = await self.r.hget(endpoints_key(owner), target)
            args["seen"] = _s(seen) if seen is not None else ""
            existing_key = device_key(args["seen"]) if seen is not None else device_key(device.device_id)
            answer = orjson.loads(
                await self._register_script(
                    keys=[
                        endpoints_key(owner),
                        user_devices_key(owner),
                        existing_key,
                        device_key(device.device_id),
                    ],
                    args=[orjson.dumps(args)],
                )
            )
            if answer.get("too_many"):
                raise TooManyDevices()
            if answer.get("retry"):
                continue
            stored = await self.get(answer["device_id"])
            if stored is not None:
                return stored, bool(answer["created"])
        raise RegistrationContended()

    def signing_secret(self, device: Device) -> str:
        """The device's `whsec_` secret, unsealed; DeviceSecretError rather than a wrong key."""
        if not device.sealed_secret:
            raise DeviceSecretError("the webhook device has no signing secret")
        try:
            return self._sealer.unseal_text(device.sealed_secret, associated_data=device.device_id)
        except SealError:
            raise DeviceSecretError(
                "the webhook signing secret does not unseal (another SECRET_KEY, tampered, or "
                "stored unsealed); register the webhook again"
            ) from None

    async def get(self, dev: str) -> Device | None:
        raw = await self.r.hgetall(device_key(dev))
        return Device.from_hash(raw) if raw else None

    async def get_many(self, devs: Sequence[str]) -> dict[str, Device]:
        async with self.r.pipeline(transaction=False) as pipe:
            for dev in devs:
                pipe.hgetall(device_key(dev))
            rows = await pipe.execute()
        return {dev: Device.from_hash(raw) for dev, raw in zip(devs, rows, strict=True) if raw}

    async def list_for(self, owner: str) -> list[Device]:
        ids = [_s(x) for x in await self.r.zrange(user_devices_key(owner), 0, -1)]
        found = await self.get_many(ids)
        return [found[d] for d in ids if d in found and found[d].owner == owner]

    async def targets(self, owners: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """For each owner, the active devices as (device_id, channel)."""
        async with self.r.pipeline(transaction=False) as pipe:
            for owner in owners:
                pipe.zrange(user_devices_key(owner), 0, -1)
            id_lists = await pipe.execute()
        all_ids = [_s(x) for ids in id_lists for x in ids]
        if not all_ids:
            return {owner: [] for owner in owners}
        async with self.r.pipeline(transaction=False) as pipe:
            for dev in all_ids:
                pipe.hmget(device_key(dev), ["channel", "status"])
            rows = await pipe.execute()
        info = dict(zip(all_ids, rows, strict=True))
        out: dict[str, list[tuple[str, str]]] = {}
        for owner, ids in zip(owners, id_lists, strict=True):
            targets = []
            for raw in ids:
                dev = _s(raw)
                channel, status = info[dev]
                if channel is not None and _s(status or ACTIVE) == ACTIVE:
                    targets.append((dev, _s(channel)))
            out[owner] = targets
        return out

    async def delete(self, owner: str, dev: str) -> bool:
        device = await self.get(dev)
        if device is None or device.owner != owner:
            return False
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(device_key(dev))
            pipe.zrem(user_devices_key(owner), dev)
            # One device per target and user, so the target names this one.
            pipe.hdel(endpoints_key(owner), target_hash(device.channel, device.endpoint))
            await pipe.execute()
        return True

    async def prune(self, device: Device) -> bool:
        """Remove a subscription the push service called gone, if it still has that endpoint."""
        res = await self._prune(
            keys=[
                device_key(device.device_id),
                user_devices_key(device.owner),
                endpoints_key(device.owner),
            ],
            args=[
                orjson.dumps(
                    {
                        "endpoint": device.endpoint,
                        "device_id": device.device_id,
                        "target": target_hash(device.channel, device.endpoint),
                    }
                )
            ],
        )
        return bool(res)

    async def disable(self, device: Device, reason: str) -> bool:
        res = await self._disable(
            keys=[device_key(device.device_id)],
            args=[orjson.dumps({"endpoint": device.endpoint, "reason": reason, "now": iso(time.time())})],
        )
        return bool(res)
