"""What a turn changes, as values: the effects a turn's tools write down and the store applies
in one transaction with the decision (messages and their outbox rows, CRM changes, activities,
handoffs, approvals), and what the store hands back. Plain pydantic models, no storage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from core.domain import Approval, Channel, ConsentStatus, Handoff, Message, Purpose


class OutboundMessage(BaseModel):
    """A message the turn sends: stored in the transcript and queued in the outbox."""

    message_id: str
    outbox_id: str
    channel: Channel
    address: str
    text: str
    purpose: Purpose
    status: str = "pending"  # sent (inline) | pending | scheduled (not before not_before)
    not_before: datetime | None = None
    is_reply: bool = False
    #: channel details for the relay (an email's subject)
    meta: dict[str, Any] = Field(default_factory=dict)


class CrmChange(BaseModel):
    stage: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    #: channel → purpose → status; merged into the stored consent purpose by purpose
    consent: dict[Channel, dict[str, ConsentStatus]] = Field(default_factory=dict)
    #: where a consent change came from, for the consent ledger: the source (``api``,
    #: ``keyword``, ``import``, a form's name…), who (an API key's holder, ``customer``, an
    #: agent), the evidence (a message id…) and when it was given (default: now)
    consent_source: str = "agent"
    consent_by: str = "bot"
    consent_evidence: str | None = None
    consent_at: datetime | None = None
    #: numeric attributes to add to, inside the transaction (a credit balance)
    increments: dict[str, float] = Field(default_factory=dict)


class LedgerEntry(BaseModel):
    """An outbound message as the frequency caps count it."""

    #: its outbox row
    id: str
    channel: Channel
    purpose: Purpose
    at: datetime
    is_reply: bool


class Activity(BaseModel):
    id: str
    kind: str  # note | task | stage_change | fields | consent
    body: dict[str, Any]


class TurnEffects(BaseModel):
    """Everything a turn changes, applied atomically with its decision."""

    outbound: list[OutboundMessage] = Field(default_factory=list)
    crm: CrmChange = Field(default_factory=CrmChange)
    activities: list[Activity] = Field(default_factory=list)
    handoffs: list[Handoff] = Field(default_factory=list)
    approvals: list[Approval] = Field(default_factory=list)


class InboundAccepted(BaseModel):
    message: Message
    is_new: bool
    turn_status: str | None
