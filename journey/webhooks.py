"""Signed outbound webhooks on handoff events, so a helpdesk or CRM can mirror the inbox.

Every handoff event (created, claimed, reply, note, customer_message, resolved, returned) is
recorded together with a ``webhook`` job in one transaction; a worker POSTs it::

    POST <JOURNEY_HANDOFF_WEBHOOK_URL>
    X-Journey-Event: handoff.claimed
    X-Journey-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
    Idempotency-Key: <event id>            (the same on every retry)

    {"id": <event id>, "type": "handoff.claimed", "created_at": ..., "event": {...},
     "handoff": {...the handoff as GET /v1/handoffs/{id} shows it when delivered...}}

The signature is the generic webhook transport's (:mod:`channels.webhook`): check it over the
raw body and reject an old ``t``. A 2xx is delivered; a timeout, a connection error, 408, 429
or a 5xx is retried with backoff (the job's attempts); any other 4xx is given up at once.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx

from channels.webhook import SIGNATURE_HEADER, sign_webhook
from core.clock import Clock

if TYPE_CHECKING:
    from journey.handoffs import HandoffService

EVENT_HEADER = "X-Journey-Event"


class WebhookFailed(Exception):
    """A delivery to retry (the receiver is down, slow or answered 408/429/5xx)."""


class HandoffWebhooks:
    def __init__(
        self, url: str, secret: str, service: HandoffService, clock: Clock,
        client: httpx.Client,
    ) -> None:
        self.url = url
        self.secret = secret
        self.service = service
        self.clock = clock
        self.client = client

    def payload(self, event_id: str) -> dict[str, Any]:
        event, view = self.service.event_with_handoff(event_id)
        return {
            "id": event.id,
            "type": f"handoff.{event.kind}",
            "created_at": event.created_at.isoformat(),
            "event": event.model_dump(mode="json"),
            "handoff": view.model_dump(mode="json"),
        }

    def deliver(self, event_id: str) -> dict[str, Any]:
        """POST one event; returns the job's result, or raises :class:`WebhookFailed`."""
        payload = self.payload(event_id)
        body = json.dumps(payload, separators=(",", ":")).encode()
        t = int(self.clock.now().timestamp())
        try:
            response = self.client.post(self.url, content=body, headers={
                "Content-Type": "application/json",
                EVENT_HEADER: payload["type"],
                SIGNATURE_HEADER: sign_webhook(self.secret, body, t),
                "Idempotency-Key": event_id,
            })
        except httpx.HTTPError as exc:
            raise WebhookFailed(f"{type(exc).__name__}: {exc}") from exc
        code = response.status_code
        if 200 <= code < 300:
            return {"status": code, "type": payload["type"]}
        if code in (408, 429) or code >= 500:
            raise WebhookFailed(f"HTTP {code}: {response.text[:200]}")
        return {"cancelled": f"permanent: HTTP {code}: {response.text[:200]}"}
