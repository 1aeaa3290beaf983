"""Response models of the API (requests reuse the domain's models)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from journey.domain import Conversation, CustomerProfile, Decision, Handoff, Message


class TranscriptEntry(BaseModel):
    message: Message
    decision: Decision | None = None


class ConversationView(BaseModel):
    conversation: Conversation
    active_handoff: Handoff | None
    transcript: list[TranscriptEntry]


class CustomerView(BaseModel):
    profile: CustomerProfile
    conversations: list[Conversation]
    handoffs: list[Handoff]
    crm_activities: list[dict[str, Any]]
    outbox: list[dict[str, Any]]


class Health(BaseModel):
    status: str
    version: str
    database: str
    vector_memory: str
    brain: str
    model: str | None = None


class ErrorBody(BaseModel):
    detail: str | list[dict[str, Any]]
