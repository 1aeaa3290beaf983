"""Response models of the API (requests reuse the domain's models)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from core.domain import (
    Approval,
    Conversation,
    CustomerProfile,
    Decision,
    Event,
    Handoff,
    Message,
)


class TranscriptEntry(BaseModel):
    message: Message
    decision: Decision | None = None


class ConversationView(BaseModel):
    conversation: Conversation
    active_handoff: Handoff | None
    transcript: list[TranscriptEntry]
    approvals: list[Approval] = []


class DecisionList(BaseModel):
    decisions: list[Decision]
    limit: int
    offset: int


class ApprovalAnswer(BaseModel):
    by: str = Field(min_length=1, max_length=200, description="Who decides (shown in the audit).")
    note: str | None = Field(None, max_length=2000)


class PolicyView(BaseModel):
    source: str
    version: str
    last_reload_error: list[str] | None = None
    policy: dict[str, Any]


class CustomerView(BaseModel):
    profile: CustomerProfile
    conversations: list[Conversation]
    handoffs: list[Handoff]
    crm_activities: list[dict[str, Any]]
    outbox: list[dict[str, Any]]
    #: merges into (or of) this profile: who, why, what moved
    merges: list[dict[str, Any]] = []
    #: queued turns, journey wake-ups and scheduled actions, with their outcome
    jobs: list[dict[str, Any]] = []
    #: the latest behavioural events, newest first
    events: list[Event] = []


class Health(BaseModel):
    status: str
    version: str
    database: str
    vector_memory: str
    brain: str
    model: str | None = None
    #: Why the configured brain is not the one deciding, if it is not.
    brain_note: str | None = None


class ErrorBody(BaseModel):
    detail: str | list[dict[str, Any]]
