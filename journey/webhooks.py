"""Signed outbound webhooks: handoff events (a helpdesk mirrors the inbox) and profile changes
(the CRM sync out: HubSpot, Salesforce or any CRM stays in step).

Every handoff event (created, claimed, reply, note, customer_message, resolved, returned) is
recorded together with a ``webhook`` job in one transaction; a worker POSTs it::

    POST <JOURNEY_HANDOFF_WEBHOOK_URL>
    X-Journey-Event: handoff.claimed
    X-Journey-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
    Idempotency-Key: <event id>            (the same on every retry)

    {"id": <event id>, "type": "handoff.claimed", "created_at": ..., "event": {...},
     "handoff": {...the handoff as GET /v1/handoffs/{id} shows it when delivered...}}

Profile changes (:mod:`memory.sync`: ``profile.updated``, ``stage.changed``,
``consent.changed``, ``crm.activity``, ``customer.erased``) are queued as ``sync`` jobs in the
transaction that makes them and POSTed the same way to ``JOURNEY_CRM_WEBHOOK_URL``::

    {"id": <event id>, "type": "stage.changed", "occurred_at": ..., "customer_id": ...,
     "data": {"from": "decision", "to": "retention"},
     "profile": {...the profile as GET /v1/customers?… shows it when delivered...}}

A customer erased before the delivery is not sent (their data is gone); ``customer.erased``
carries their id only.

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
    from memory.store import Store

EVENT_HEADER = "X-Journey-Event"


class WebhookFailed(Exception):
    """A delivery to retry (the receiver is down, slow or answered 408/429/5xx)."""


def post_signed(client: httpx.Client, url: str, secret: str, clock: Clock,
                payload: dict[str, Any]) -> dict[str, Any]:
    """POST ``payload`` signed; returns the job's result, or raises :class:`WebhookFailed`."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    t = int(clock.now().timestamp())
    try:
        response = client.post(url, content=body, headers={
            "Content-Type": "application/json",
            EVENT_HEADER: payload["type"],
            SIGNATURE_HEADER: sign_webhook(secret, body, t),
            "Idempotency-Key": payload["id"],
        })
    except httpx.HTTPError as exc:
        raise WebhookFailed(f"{type(exc).__name__}: {exc}") from exc
    code = response.status_code
    if 200 <= code < 300:
        return {"status": code, "type": payload["type"]}
    if code in (408, 429) or code >= 500:
        raise WebhookFailed(f"HTTP {code}: {response.text[:200]}")
    return {"cancelled": f"permanent: HTTP {code}: {response.text[:200]}"}


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
        return post_signed(self.client, self.url, self.secret, self.clock,
                           self.payload(event_id))


class CrmWebhooks:
    """Delivers the CRM sync out (``sync`` jobs) to ``JOURNEY_CRM_WEBHOOK_URL``."""

    def __init__(self, url: str, secret: str, store: Store, clock: Clock,
                 client: httpx.Client) -> None:
        self.url = url
        self.secret = secret
        self.store = store
        self.clock = clock
        self.client = client

    def deliver(self, event: dict[str, Any]) -> dict[str, Any]:
        """POST one queued change with the profile as it is now."""
        payload = dict(event)
        if payload["type"] != "customer.erased":
            live = self.store.live_customer_id(str(payload["customer_id"]))
            profile = self.store.get_customer(live) if live else None
            if profile is None:
                return {"cancelled": "the customer was erased before the delivery"}
            payload["customer_id"] = profile.id
            payload["profile"] = profile.model_dump(mode="json")
        return post_signed(self.client, self.url, self.secret, self.clock, payload)
