"""The device routes: register a Web Push subscription or a webhook URL, list, delete; the
VAPID public key browsers subscribe with."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response

from notification_service import state, webpush
from notification_service.devices import DeviceSecretError, RegistrationContended, TooManyDevices
from notification_service.schemas import DeviceIn, DeviceList, DeviceOut, VapidPublicKey
from shared import (
    API_PREFIX,
    Allowlist,
    Conflict,
    CurrentUser,
    NotFound,
    OutboundRefused,
    OutboundUnreachable,
    Unprocessable,
    check_url,
    resolve_checked,
    route,
    webhooks,
)

router = APIRouter(prefix=API_PREFIX, tags=["notifications"])
RESOLVE_TIMEOUT_SECONDS = 3.0


async def _check_target(url: str, allowlist: Allowlist, field: str) -> None:
    """Refuse a URL the workers would refuse to reach (SSRF rules), at registration."""
    try:
        checked = check_url(url, allowlist)
        if checked.scheme != "https" and not checked.allowlisted:
            raise OutboundRefused("plain http only for hosts in OUTBOUND_ALLOWLIST; use https")
        if checked.ip is None:
            async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                await resolve_checked(checked.host, checked.port, allowlist)
    except OutboundRefused as exc:
        raise Unprocessable(
            f"{field} is not allowed as an outbound target: {exc.reason}.", code="url_not_allowed"
        ) from None
    except (OutboundUnreachable, TimeoutError):
        # Not resolvable right now: it is checked again before every delivery.
        pass


@route(
    router,
    "POST",
    "/devices/",
    status_code=201,
    response_model=DeviceOut,
    responses={200: {"model": DeviceOut, "description": "You already had this device: here it is."}},
)
async def register_device(
    request: Request, response: Response, body: DeviceIn, user: CurrentUser
) -> dict[str, Any]:
    """Register one of your devices: a Web Push subscription or a webhook URL.

    Registering the same push endpoint or webhook URL again answers the device you already
    have (200, refreshed and re-enabled) instead of adding a second one; a new device is 201.
    A webhook device's `secret` (Standard Webhooks, `whsec_...`) is in these answers only.
    """
    allowlist = state.allowlist(request)
    devices = state.devices(request)
    try:
        if body.subscription is not None:
            try:
                sub = webpush.parse_subscription(body.subscription.model_dump(), allowlisted=allowlist.allows)
            except webpush.InvalidSubscription as exc:
                raise Unprocessable(str(exc), code="invalid_subscription") from None
            await _check_target(sub.endpoint, allowlist, "subscription.endpoint")
            device, created = await devices.add_webpush(user.sub, sub, body.name)
            response.status_code = 201 if created else 200
            return device.view()
        assert body.url is not None
        await _check_target(body.url, allowlist, "url")
        device, created = await devices.add_webhook(user.sub, body.url, webhooks.generate_secret(), body.name)
        response.status_code = 201 if created else 200
        # The owner's own secret, again: a client that lost the first answer can still verify.
        return {**device.view(), "secret": devices.signing_secret(device)}
    except TooManyDevices:
        limit = state.settings(request).notify_max_devices_per_user
        raise Unprocessable(
            f"You have {limit} devices, the most allowed; delete one first.",
            code="too_many_devices",
        ) from None
    except DeviceSecretError as exc:
        raise Conflict(f"{exc}.", code="device_secret_unavailable") from None
    except RegistrationContended:
        raise Conflict(
            "This device is being registered and removed at the same time; try again.",
            code="device_registration_conflict",
        ) from None


@route(router, "GET", "/devices/", response_model=DeviceList)
async def list_devices(request: Request, user: CurrentUser) -> dict[str, Any]:
    """Your devices, oldest first (secrets are never shown again)."""
    devices = [d.view() for d in await state.devices(request).list_for(user.sub)]
    return {"devices": devices, "count": len(devices)}


@route(router, "DELETE", "/devices/{device_id}", status_code=204)
async def delete_device(request: Request, device_id: str, user: CurrentUser) -> Response:
    """Remove one of your devices; nothing more is sent to it."""
    if not await state.devices(request).delete(user.sub, device_id):
        raise NotFound("No such device.", code="device_not_found")
    return Response(status_code=204)


@route(router, "GET", "/webpush/vapid-public-key", response_model=VapidPublicKey)
async def vapid_public_key(request: Request) -> dict[str, str]:
    """The applicationServerKey browsers subscribe with (public; no token needed)."""
    vapid: webpush.VapidKey | None = request.app.state.vapid
    if vapid is None:
        settings = state.settings(request)
        vapid = await webpush.load_vapid_key(
            request.app.state.redis, settings.vapid_private_key, server_secret=settings.secret_key
        )
        request.app.state.vapid = vapid
    return {"public_key": vapid.public_key_b64}
