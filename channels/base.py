"""The channel port. The outbox relay (``journey.worker``) calls ``adapter.send(delivery)`` for
each due outbox row; an adapter talks to one provider and says how the attempt ended:

- it returns a :class:`SendResult`: the provider accepted the message;
- it raises :class:`TransientError`: try again later (timeouts, 5xx, 429, connection refused);
- it raises :class:`PermanentError`: retrying cannot help (a 4xx other than 408/429, an invalid
  address); the message goes straight to the dead-letter queue.

Every provider call carries ``delivery.idempotency_key`` (an ``Idempotency-Key`` header, or a
deterministic ``Message-ID`` for email), so a retry after an ambiguous failure (the provider did
the work, the answer was lost) is recognised by the provider instead of sent twice.
"""

from __future__ import annotations

from typing import Any, Protocol

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
