"""The domain model: customers, events, messages, conversations, decisions, handoffs.

Plain pydantic models with no storage concerns. Lifecycle stages are strings validated against
the lifecycle configuration (``journey.lifecycle``), not an enum: a company defines its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Channel = Literal["web_chat", "email", "sms", "whatsapp"]
CHANNELS: tuple[Channel, ...] = ("web_chat", "email", "sms", "whatsapp")
IdentityKind = Literal["email", "phone", "web_chat_id", "crm_id", "whatsapp_id"]
#: Which identity a channel delivers to.
CHANNEL_IDENTITY: dict[Channel, IdentityKind] = {
    "web_chat": "web_chat_id",
    "email": "email",
    "sms": "phone",
    "whatsapp": "phone",
}
ConsentStatus = Literal["granted", "revoked", "unknown"]
Direction = Literal["inbound", "outbound"]
Sentiment = Literal["positive", "neutral", "negative"]
Queue = Literal["sales", "support"]
Priority = Literal["low", "normal", "high", "urgent"]
Purpose = Literal["service", "marketing", "transactional"]
Outcome = Literal["allow", "modify", "deny"]


class Identity(BaseModel):
    kind: IdentityKind
    value: str


class CustomerProfile(BaseModel):
    """The unified profile: every identity, attribute and consent of one customer."""

    id: str
    name: str | None = None
    identities: list[Identity] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)
    lifecycle_stage: str
    consent: dict[Channel, ConsentStatus] = Field(default_factory=dict)
    timezone: str = "UTC"
    created_at: datetime
    updated_at: datetime

    def identity(self, kind: IdentityKind) -> str | None:
        return next((i.value for i in self.identities if i.kind == kind), None)

    def address_for(self, channel: Channel) -> str | None:
        """The address a message on ``channel`` goes to, or None if the customer has none."""
        return self.identity(CHANNEL_IDENTITY[channel])

    def consent_for(self, channel: Channel) -> ConsentStatus:
        return self.consent.get(channel, "unknown")

    @property
    def first_name(self) -> str | None:
        return self.name.split()[0] if self.name else None


class Event(BaseModel):
    """A behavioural signal: a page view, a download, a cart abandoned, a purchase."""

    id: str
    customer_id: str
    type: str
    properties: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime


class Message(BaseModel):
    id: str
    conversation_id: str
    customer_id: str
    direction: Direction
    channel: Channel
    text: str
    external_id: str | None = None
    author: str = "customer"  # customer | bot | human:<name>
    created_at: datetime


class Handoff(BaseModel):
    id: str
    conversation_id: str
    customer_id: str
    queue: Queue
    reason: str
    summary: str
    priority: Priority
    status: Literal["open", "claimed", "resolved", "returned"] = "open"
    decision_id: str | None = None
    created_at: datetime


# --- proposed actions: what the brain asks the tools to do -----------------------------------


class SendMessage(BaseModel):
    """Send a message to the current customer on a channel."""

    model_config = ConfigDict(extra="forbid")
    tool: Literal["send_message"] = "send_message"
    channel: Channel
    text: str = Field(min_length=1)
    purpose: Purpose = "service"


class UpdateCrm(BaseModel):
    """Update the current customer's CRM record: lifecycle stage, fields, a note or a task."""

    model_config = ConfigDict(extra="forbid")
    tool: Literal["update_crm"] = "update_crm"
    stage: str | None = None
    fields: dict[str, str | int | float | bool | list[str]] = Field(default_factory=dict)
    note: str | None = None
    task: str | None = None


class EscalateToHuman(BaseModel):
    """Hand the conversation to a human team."""

    model_config = ConfigDict(extra="forbid")
    tool: Literal["escalate_to_human"] = "escalate_to_human"
    queue: Queue
    reason: str
    summary: str
    priority: Priority = "normal"


ProposedAction = Annotated[
    SendMessage | UpdateCrm | EscalateToHuman, Field(discriminator="tool")
]


class Verdict(BaseModel):
    """The policy gate's answer for one proposed action, with its reasons."""

    action_index: int
    tool: str
    outcome: Outcome
    reason_codes: list[str] = Field(default_factory=list)
    detail: str = ""
    executed: bool = False
    result: dict[str, Any] = Field(default_factory=dict)


class BrainInfo(BaseModel):
    """Who decided: the brain, the model, and why a fallback happened, if one did."""

    name: Literal["rules", "openai"]
    model: str | None = None
    fallback_reason: str | None = None
    repaired: bool = False
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Decision(BaseModel):
    """One turn's decision, as recorded in the audit trail."""

    id: str
    conversation_id: str
    customer_id: str
    inbound_message_id: str
    intent: str
    intent_confidence: float
    stage: str
    previous_stage: str
    sentiment: Sentiment
    proposed: list[ProposedAction]
    verdicts: list[Verdict]
    reasons: list[str]
    reply: str | None
    brain: BrainInfo
    latency_ms: float
    created_at: datetime


class Conversation(BaseModel):
    id: str
    customer_id: str
    status: Literal["open", "closed"]
    owner: Literal["bot", "human"]
    created_at: datetime
    updated_at: datetime
