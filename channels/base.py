"""The channel port. The outbox relay (``journey.worker``) calls ``adapter.send(delivery)`` for
each due outbox row; an adapter talks to one provider and says how the attempt ended:

- it returns a :class:`SendResult`: the provider accepted the message;
- it raises :class:`TransientError`: try again later (timeouts, 5xx, 429, connection refused);
- it raises :class:`PermanentError`: retrying cannot help (a 4xx other than 408/429, an invalid
  address); the message goes straight to the dead-letter queue.

Every provider call carries ``delivery.idempotency_key`` (an ``Idempotency-Key`` header, or a
deterministic ``Message-ID`` for email), so a retry after an ambiguous failure (the provider did
the work, the answer was lost) is recognised by the provider instead of sent twice.

Inbound, the other way: a provider's module reads what the provider posted to us (its webhook's
fields) after checking the provider's signature, and hands back provider-neutral values: an
:class:`Inbound` message or a :class:`DeliveryStatus`. A request that is not the provider's
raises :class:`SignatureError`; fields that make no message raise :class:`InboundError`; a
provider whose secret is not set raises :class:`NotConfigured`. Each carries the detail the HTTP
layer answers with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import parse_qsl

from pydantic import BaseModel, Field

from core.domain import Channel, Purpose


class Delivery(BaseModel):
    """One outbound message, as the relay hands it to an adapter."""

    outbox_id: str
    message_id: str
    idempotency_key: str
    customer_id: str
    conversation_id: str
    channel: Channel
    address: str
    text: str
    purpose: Purpose
    is_reply: bool = False
    attempt: int = 1
    #: email only: the subject, and the thread this message answers (Message-ID values)
    subject: str | None = None
    in_reply_to: str | None = None
    references: list[str] = Field(default_factory=list)
    #: the customer's first name, for a greeting; the company, for a sign-off
    first_name: str | None = None
    company: str = ""


class SendResult(BaseModel):
    """The provider accepted the message."""

    provider_message_id: str | None = None
    #: what the provider said: queued, sent, accepted...
    provider_status: str = "sent"
    #: anything worth keeping: SMS segments and encoding, the email's Message-ID...
    meta: dict[str, Any] = Field(default_factory=dict)


class TransientError(Exception):
    """The attempt failed in a way a later retry may fix."""


class PermanentError(Exception):
    """The attempt failed in a way no retry will fix: dead-letter it now."""


class ChannelAdapter(Protocol):
    #: the transport's name: smtp, twilio, webhook, devbox, webchat
    name: str

    def send(self, delivery: Delivery) -> SendResult: ...

    def close(self) -> None: ...


# --- inbound ---------------------------------------------------------------------------------

#: The longest provider message id kept as it is (the messages table's limit on external ids).
MAX_EXTERNAL_ID = 200


class Inbound(BaseModel):
    """A message a provider delivered to us, in no provider's terms."""

    channel: Channel
    #: who wrote, as the channel knows them: a phone number (sms, whatsapp), an email address
    address: str
    #: the sender's display name, when the provider gives one
    name: str | None = None
    #: empty for a message without text (media only)
    text: str = ""
    #: email: the subject (also in ``meta``, with the thread ids)
    subject: str | None = None
    #: the provider's message id (see :func:`external_id`): a repeat is stored once
    external_id: str | None = None
    #: what the provider said besides, kept on the stored message: ``{"<provider>": {...}}``
    meta: dict[str, Any] = Field(default_factory=dict)


class DeliveryStatus(BaseModel):
    """A provider's word on a message we sent: its id at the provider, its status, the error."""

    provider_message_id: str
    status: str
    error: str | None = None


class SignatureError(Exception):
    """The request is not the provider's: its signature is missing, malformed, stale or wrong.
    ``str(exc)`` says which."""


class InboundError(ValueError):
    """The provider's fields make no message (no sender, no text, a body that is not JSON...).
    ``str(exc)`` says what is wrong."""


class NotConfigured(Exception):
    """The provider's secret is not set, so its webhooks cannot be checked. ``str(exc)`` names
    the setting."""


def form_fields(body: bytes) -> dict[str, Any]:
    """The fields of a form-encoded body; a repeated name keeps all its values (a list), as
    Twilio signs them."""
    fields: dict[str, Any] = {}
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        current = fields.get(name)
        if current is None:
            fields[name] = value
        else:
            fields[name] = [*current, value] if isinstance(current, list) else [current, value]
    return fields


def json_fields(body: bytes) -> dict[str, Any]:
    """The fields of a JSON object body (an empty body has none); :class:`InboundError` if it
    is not one."""
    try:
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError) as exc:
        raise InboundError(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InboundError("the body must be a JSON object")
    return data


def field(fields: Mapping[str, Any], *names: str) -> str:
    """The first non-empty of ``names`` (case-insensitive), as a string; a repeated field gives
    its first value."""
    lowered = {k.lower(): v for k, v in fields.items()}
    for name in names:
        value = lowered.get(name.lower())
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None and str(value).strip():
            return str(value).strip()
    return ""


def external_id(value: str | None) -> str | None:
    """A provider's message id as our dedupe key; one too long to store is hashed."""
    value = (value or "").strip()
    if len(value) > MAX_EXTERNAL_ID:
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return value or None
