"""The generic webhook transport: each message is POSTed as signed JSON to ``webhook_url``, for
a provider we have no adapter for, or your own system.

The body (UTF-8 JSON)::

    {"id": <message id>, "idempotency_key", "channel", "address", "text", "purpose",
     "customer_id", "conversation_id", "is_reply"}

Headers: ``Idempotency-Key`` (the same on every retry of a message) and a Stripe-style
``X-Journey-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(webhook_secret, "<t>.<raw body>")>``.
A receiver checks the signature over the raw bytes and rejects a ``t`` older than a few minutes
(:func:`verify_webhook`), so a captured request cannot be replayed later. Inbound generic webhooks
(``POST /v1/channels/webhook/inbound``) are signed the same way: :func:`verify_inbound_webhook`
checks one and gives the key a receiver remembers against replays (the signature in one
canonical form); the body is the turn API's own inbound message, JSON.

The receiver answers 2xx (optionally ``{"id": ..., "status": ...}``); a timeout, a connection
error, 408, 429 or a 5xx is :class:`TransientError`, any other 4xx :class:`PermanentError`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC

import httpx

from channels.base import (
    Delivery,
    NotConfigured,
    PermanentError,
    SendResult,
    SignatureError,
    TransientError,
)
from core.clock import Clock, SystemClock
from core.domain import Channel
from core.settings import Settings

SIGNATURE_HEADER = "X-Journey-Signature"
TOLERANCE_S = 300


def _mac(secret: str, body: bytes, t: int) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign_webhook(secret: str, body: bytes, t: int) -> str:
    """The ``X-Journey-Signature`` value for ``body`` sent at unix time ``t``."""
    return f"t={t},v1={_mac(secret, body, t)}"


def webhook_signature_problem(
    secret: str, header: str | None, body: bytes, now: float, tolerance_s: float = TOLERANCE_S
) -> str | None:
    """Why ``header`` does not sign ``body`` (None if it does): missing, malformed, stale or
    wrong. Several ``v1`` values are allowed (while a secret is being rotated)."""
    if not header:
        return f"missing {SIGNATURE_HEADER} header"
    timestamp, candidates = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not (timestamp.isascii() and timestamp.isdigit()) \
            or len(timestamp) > 12 or not candidates:
        return f"malformed {SIGNATURE_HEADER} header: expected t=<unix>,v1=<hex>"
    t = int(timestamp)
    if abs(now - t) > tolerance_s:
        return f"stale {SIGNATURE_HEADER}: t={t} is more than {tolerance_s:g} s from now"
    expected = _mac(secret, body, t).encode()
    if not any(hmac.compare_digest(expected, c.encode()) for c in candidates):
        return f"invalid {SIGNATURE_HEADER}"
    return None


def verify_webhook(
    secret: str, header: str | None, body: bytes, now: float, tolerance_s: float = TOLERANCE_S
) -> bool:
    """Is ``header`` a valid, fresh signature of ``body``? Constant-time."""
    return webhook_signature_problem(secret, header, body, now, tolerance_s) is None


def inbound_secret(settings: Settings) -> str:
    """The secret inbound webhooks are signed with; :class:`NotConfigured` if it is not set."""
    secret = settings.webhook_secret.get_secret_value()
    if not secret:
        raise NotConfigured("the generic webhook is not configured: set JOURNEY_WEBHOOK_SECRET")
    return secret


def _replay_key(secret: str, header: str, body: bytes) -> str:
    """The signature a valid ``header`` carries, in one canonical form (``t=<t>,v1=<ours>``):
    extra ``v1`` values, spaces or another order do not make a captured header new."""
    signed_at = ""
    for part in header.split(","):  # as webhook_signature_problem reads it: the last t
        name, _, value = part.strip().partition("=")
        if name == "t":
            signed_at = value
    return sign_webhook(secret, body, int(signed_at))


def verify_inbound_webhook(secret: str, header: str | None, body: bytes, now: float) -> str:
    """The replay key of an inbound webhook whose ``header`` is a valid, fresh signature of
    ``body``: the signature in one canonical form, the same however the header was reshaped.
    :class:`SignatureError` naming the problem otherwise."""
    problem = webhook_signature_problem(secret, header, body, now)
    if problem:
        raise SignatureError(problem)
    return _replay_key(secret, header or "", body)


def _error(response: httpx.Response) -> str:
    return f"webhook answered {response.status_code}: {response.text[:300]}"


class WebhookAdapter:
    name = "webhook"

    def __init__(
        self,
        settings: Settings,
        channel: Channel,
        clock: Clock | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        secret = settings.webhook_secret.get_secret_value()
        if not settings.webhook_url or not secret:
            raise ValueError(
                f"the webhook transport for {channel} needs webhook_url and webhook_secret"
            )
        self.channel = channel
        self.url = settings.webhook_url
        self.secret = secret
        self.clock = clock or SystemClock()
        self.client = client or httpx.Client(timeout=settings.provider_timeout_s)

    def send(self, delivery: Delivery) -> SendResult:
        payload = {
            "id": delivery.message_id, "idempotency_key": delivery.idempotency_key,
            "channel": delivery.channel, "address": delivery.address, "text": delivery.text,
            "purpose": delivery.purpose, "customer_id": delivery.customer_id,
            "conversation_id": delivery.conversation_id, "is_reply": delivery.is_reply,
        }
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        t = int(self.clock.now().astimezone(UTC).timestamp())
        headers = {
            "Content-Type": "application/json", "Idempotency-Key": delivery.idempotency_key,
            SIGNATURE_HEADER: sign_webhook(self.secret, body, t),
        }
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientError(f"webhook unreachable: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status in (408, 429) or status >= 500:
            raise TransientError(_error(response))
        if status >= 400:
            raise PermanentError(_error(response))
        try:
            answer = response.json()
        except ValueError:
            answer = None
        answer = answer if isinstance(answer, dict) else {}
        return SendResult(
            provider_message_id=str(answer.get("id") or delivery.message_id),
            provider_status=str(answer.get("status") or "accepted"),
            meta={"webhook_status": status},
        )

    def close(self) -> None:
        self.client.close()

