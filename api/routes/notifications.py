"""Transactional messages: send a template to a customer through the policy gate
(``POST /v1/notifications``) and see what became of it (``GET /v1/notifications/{id}``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Response

from api.deps import NotificationsDep, require
from journey.notifications import NotificationRequest, NotificationResult, NotificationView

router = APIRouter(prefix="/v1", tags=["notifications"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": NotificationResult,
          "description": "suppressed: the policy refused it (`reason_codes` say why); nothing "
                         "is queued and nothing will be sent"},
    202: {"model": NotificationResult,
          "description": "accepted: `queued` (the relay delivers it now), `scheduled` (deferred "
                         "by the policy until `deliver_at`) or `held` (waits for a person's "
                         "approval)"},
    404: {"description": "no such customer (the message names the field)"},
    409: {"description": "the idempotency key was used for a different request, or its first "
                         "request is still being handled"},
    422: {"description": "a field is invalid: an unknown template, a channel the template is "
                         "not sent on, a missing or mistyped variable (the message names it)"},
}


@router.post("/notifications", response_model=NotificationResult, status_code=202,
             responses=_RESPONSES)
def send_notification(
    body: NotificationRequest,
    response: Response,
    notifications: NotificationsDep,
    key: Annotated[str, Depends(require("notifications:write"))],
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$",
        description="Or `idempotency_key` in the body.")] = None,
) -> NotificationResult:
    """Send the template `template` to one customer (`customer_id`, or any identity in
    `customer`) on `channel`, rendered with `variables`, through the policy gate: consent per
    channel and purpose, frequency caps and quiet hours as the policy says, content rules. The
    decision is recorded (`GET /v1/decisions`) and the relay delivers the message, checking the
    policy again right before the send.

    `202` when it was queued, scheduled or held; `200` when the policy suppressed it. A
    repeated idempotency key answers as the first request did (same status, header
    `Idempotent-Replayed: true`) and sends nothing again."""
    result = notifications.send(body, header_key=idempotency_key, by=key or "api")
    response.status_code = 200 if result.status == "suppressed" else 202
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return result


@router.get("/notifications/{notification_id}", response_model=NotificationView,
            responses={404: {"description": "no such notification"}})
def get_notification(
    notifications: NotificationsDep,
    _key: Annotated[str, Depends(require("notifications:read", "notifications:write"))],
    notification_id: Annotated[str, Path(min_length=1, max_length=40)],
) -> NotificationView:
    """A notification's verdict and, once queued, its delivery as the relay left it (`pending`,
    `sent` with the provider's id, `scheduled`, `cancelled` by the policy at send time with the
    reason, `dead` after the last retry)."""
    return notifications.get(notification_id)
