"""The domain model: customers, events, messages, conversations, decisions, handoffs.

Plain pydantic models with no storage concerns. Lifecycle stages are strings validated against
the lifecycle configuration (``policy.lifecycle``), not an enum: a company defines its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Channel = Literal["web_chat", "email", "sms", "whatsapp"]
CHANNELS: tuple[Channel, ...] = ("web_chat", "email", "sms", "whatsapp")
IdentityKind = Literal["email", "phone", "web_chat_id", "crm_id", "whatsapp_id", "external_id",
                       "anonymous_id"]
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
#: A handoff queue: ``sales`` and ``support`` always exist; the policy may declare more
#: (``handoff.queues``) and route to them by intent, stage and customer value.
Queue = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
Priority = Literal["low", "normal", "high", "urgent"]
Purpose = Literal["service", "marketing", "transactional"]
Outcome = Literal["allow", "modify", "deny"]


class Identity(BaseModel):
    kind: IdentityKind
    value: str


class ChannelConsent(BaseModel):
    """Consent on one channel, per purpose. Transactional messages follow ``service``."""

    model_config = ConfigDict(extra="forbid")
    service: ConsentStatus = "unknown"
    marketing: ConsentStatus = "unknown"

    def status(self, purpose: Purpose) -> ConsentStatus:
        return self.marketing if purpose == "marketing" else self.service


def _consent_value(value: Any) -> Any:
    """A bare status (``sms: revoked``) means the channel as a whole; granted covers service."""
    if isinstance(value, str):
        return {"service": value, "marketing": "revoked" if value == "revoked" else "unknown"}
    return value


class CustomerProfile(BaseModel):
    """The unified profile: every identity, attribute and consent of one customer."""

    id: str
    name: str | None = None
    identities: list[Identity] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)
    lifecycle_stage: str
    consent: dict[Channel, ChannelConsent] = Field(default_factory=dict)
    #: IANA name; empty when unknown (the policy's default timezone is used then).
    timezone: str = ""
    #: BCP 47 (``en-US``); empty when unknown.
    locale: str = ""
    #: The channel the customer asked to be reached on, if they said.
    channel_preference: Channel | None = None
    created_at: datetime
    updated_at: datetime

    def identity(self, kind: IdentityKind) -> str | None:
        return next((i.value for i in self.identities if i.kind == kind), None)

    def address_for(self, channel: Channel) -> str | None:
        """The address a message on ``channel`` goes to, or None if the customer has none."""
        return self.identity(CHANNEL_IDENTITY[channel])

    @field_validator("consent", mode="before")
    @classmethod
    def _consent(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _consent_value(v) for k, v in value.items()}
        return value

    def consent_for(self, channel: Channel, purpose: Purpose = "service") -> ConsentStatus:
        found = self.consent.get(channel)
        return found.status(purpose) if found else "unknown"

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
    #: Channel details: an email's subject, Message-ID, In-Reply-To, References.
    meta: dict[str, Any] = Field(default_factory=dict)


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
    queue: Queue = Field(
        description="sales or support (the company's routing may pick a more specific team)"
    )
    reason: str
    summary: str
    priority: Priority = "normal"


class IssueCredit(BaseModel):
    """Credit the current customer's account, e.g. goodwill after a service failure.

    A person approves every credit before it is applied; propose it, do not promise it."""

    model_config = ConfigDict(extra="forbid")
    tool: Literal["issue_credit"] = "issue_credit"
    amount: float = Field(gt=0, le=1_000_000, description="Amount in the account's currency.")
    reason: str = Field(min_length=1, max_length=500)


ProposedAction = Annotated[
    SendMessage | UpdateCrm | EscalateToHuman | IssueCredit, Field(discriminator="tool")
]

#: Where in the arbitration a verdict was decided.
Step = Literal["eligibility", "applicability", "suitability", "priority", "approval", "execution"]
#: How an allowed action was changed.
Modification = Literal[
    "defer", "switch_channel", "rewrite", "trim", "reformat", "reroute", "drop_fields", "confirm",
    "repurpose", "redact",
]


class RejectedCall(BaseModel):
    """A tool call the model made that is not a valid action; recorded, never run."""

    tool: str
    arguments: Any = None
    reason_codes: list[str] = Field(default_factory=lambda: ["invalid_arguments"])
    detail: str = ""


class Verdict(BaseModel):
    """The policy gate's answer for one proposed action, with its reasons."""

    action_index: int
    tool: str
    outcome: Outcome
    reason_codes: list[str] = Field(default_factory=list)
    detail: str = ""
    step: Step | None = None
    modifications: list[Modification] = Field(default_factory=list)
    #: For ``modify``: the action as it runs (rewritten text, switched channel, rerouted queue).
    final: dict[str, Any] | None = None
    #: A deferred message goes out at this time (quiet hours).
    deliver_at: datetime | None = None
    #: Set when the action waits for a person's approval.
    approval_id: str | None = None
    #: The engine added this action (an escalation rule fired); the model did not propose it.
    added_by_policy: bool = False
    executed: bool = False
    result: dict[str, Any] = Field(default_factory=dict)


class BrainInfo(BaseModel):
    """Who decided: the brain, the model, and why a fallback happened, if one did."""

    name: Literal["rules", "openai", "local"]
    model: str | None = None
    #: what the model did: ``decide`` (the whole decision) or ``write`` (the reply, the rules
    #: deciding; agent/brains/writer.py); None: no model
    role: Literal["decide", "write"] | None = None
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
    #: The message this decision answers; None for a proactive decision (see ``trigger``).
    inbound_message_id: str | None
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
    #: The facts the policy engine decided on (consent, local time, cap counts, signals...).
    inputs: dict[str, Any] = Field(default_factory=dict)
    policy_version: str = ""
    #: Tool calls the model made that were not valid actions.
    rejected: list[RejectedCall] = Field(default_factory=list)
    #: A proactive decision: the job that woke the agent, and the journey trigger that fired.
    job_id: str | None = None
    trigger: dict[str, Any] | None = None


#: ``blocked``: a person approved, but the policy no longer allowed it when it was to run.
ApprovalStatus = Literal["pending", "approved", "rejected", "blocked"]


class Approval(BaseModel):
    """An action held for a person's approval; it runs once, after approval."""

    id: str
    decision_id: str
    conversation_id: str
    customer_id: str
    inbound_message_id: str
    action: dict[str, Any]
    reason_codes: list[str] = Field(default_factory=list)
    status: ApprovalStatus = "pending"
    result: dict[str, Any] = Field(default_factory=dict)
    decided_by: str | None = None
    note: str | None = None
    #: For a held message: the engine deferred it until then (quiet hours), and it is a reply.
    deliver_at: datetime | None = None
    is_reply: bool | None = None
    created_at: datetime
    decided_at: datetime | None = None


class Conversation(BaseModel):
    id: str
    customer_id: str
    status: Literal["open", "closed"]
    owner: Literal["bot", "human"]
    created_at: datetime
    updated_at: datetime


class Handback(BaseModel):
    """A conversation people handed back: what the bot reads before it answers again."""

    handoff_id: str
    status: str
    outcome: str | None
    by: str
    closed_at: datetime
    notes: list[str]
    #: What the person told the customer (the bot must not say it again).
    replies: list[str]
