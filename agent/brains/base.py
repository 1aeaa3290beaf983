"""What every brain is given and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, Field

from agent.understand import Signals
from core.domain import (
    BrainInfo,
    Channel,
    CustomerProfile,
    Event,
    Handback,
    Handoff,
    Message,
    ProposedAction,
    RejectedCall,
    Sentiment,
)
from core.ports import MemoryHit
from policy.lifecycle import Lifecycle


class DecisionOutput(BaseModel):
    """Your decision for this turn: what the customer wants, where they are, what to do."""

    intent: str = Field(description="The customer's intent: one of the listed intent names.")
    stage: str = Field(description="The customer's lifecycle stage after this message.")
    sentiment: Sentiment = Field(description="The customer's sentiment in this message.")
    confidence: float = Field(ge=0, le=1, description="How sure you are of the intent, 0 to 1.")
    reply: str | None = Field(
        description="The reply to send on the customer's current channel, or null for none."
    )
    actions: list[ProposedAction] = Field(
        default_factory=list,
        description="Other tool calls: update_crm, escalate_to_human, send_message elsewhere.",
    )


class BrainDecision(BaseModel):
    output: DecisionOutput
    info: BrainInfo
    #: Tool calls that were not valid actions (recorded with a reason code, never run).
    rejected: list[RejectedCall] = Field(default_factory=list)


@dataclass
class BrainInput:
    profile: CustomerProfile
    channel: Channel
    text: str
    signals: Signals
    lifecycle: Lifecycle
    rule_stage: str
    rule_name: str | None
    recent: list[Message] = field(default_factory=list)
    history: list[MemoryHit] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    active_handoff: Handoff | None = None
    #: CRM fields the policy lets the bot write, and the policy in brief for the prompt.
    writable_fields: tuple[str, ...] = ()
    policy_brief: str = ""
    #: The policy reads this message as an opt-out (keyword, or classifier plus a cue word).
    opt_out: bool = False
    #: People owned the conversation and handed it back: their notes and replies.
    handback: Handback | None = None


class Brain(Protocol):
    name: str

    def decide(self, data: BrainInput) -> BrainDecision: ...
