"""The human inbox: handoffs to sales, support and the configured queues.

Authenticate with an agent's key: scope ``inbox`` (every queue), ``inbox:<queue>`` (that
queue) or ``admin``. The key's name (``JOURNEY_API_KEYS``) is the agent's name.

State changes are idempotent and race-safe: of two agents claiming at once one gets 200 and the
other 409; repeating a change you already made returns the same result; a reply or note sent
again with the same ``Idempotency-Key`` header is recorded (and delivered) once.

Each key has a rate limit (``JOURNEY_RATE_LIMIT_API``): over it, ``429`` with ``Retry-After``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Header, Path, Query
from pydantic import BaseModel, Field

from api.deps import HandoffsDep, InboxAgent
from api.ratelimit import LIMITED
from journey.handoffs import (
    HandoffEvent,
    HandoffMetrics,
    HandoffPacket,
    HandoffView,
)

router = APIRouter(prefix="/v1/handoffs", tags=["handoffs"])
T = TypeVar("T")

HandoffId = Annotated[str, Path(max_length=40, description="The handoff's id")]
IdempotencyKey = Annotated[
    str | None,
    Header(max_length=200, description="A retry with the same key is recorded once."),
]
_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "the key does not cover this handoff's queue"},
    404: {"description": "no such handoff"},
    409: {"description": "the handoff's state does not allow this (claimed by someone else, "
                         "not claimed yet, already closed)"},
    422: {"description": "invalid input, or the policy refused the reply"},
    **LIMITED,
}


class Text(BaseModel):
    text: str = Field(min_length=1, max_length=4000)


class Resolution(BaseModel):
    outcome: str = Field(min_length=1, max_length=40,
                         description="One of the policy's handoff.outcomes")
    note: str | None = Field(None, max_length=4000, description="Kept for the bot and the team.")


class HandBack(BaseModel):
    note: str | None = Field(None, max_length=4000,
                             description="What the bot should know when it answers again.")


@router.get("", response_model=list[HandoffView], responses=LIMITED)
def list_handoffs(
    handoffs: HandoffsDep,
    agent: InboxAgent,
    queue: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[
        Literal["open", "claimed", "resolved", "returned", "active", "closed"] | None,
        Query(description="active: open or claimed; closed: resolved or returned"),
    ] = None,
    customer_id: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[HandoffView]:
    """Handoffs in your queues, newest first, with their SLA timers and unread counts."""
    return handoffs.list(
        agent, queue=queue, status=status, customer_id=customer_id, limit=limit)


@router.get("/metrics", response_model=HandoffMetrics, responses=LIMITED)
def handoff_metrics(
    handoffs: HandoffsDep,
    agent: InboxAgent,
    since: Annotated[datetime | None, Query(description="Handoffs created since (ISO 8601)")]
    = None,
) -> HandoffMetrics:
    """Per queue: time to claim and to resolve (median, p90), SLAs met and missed, resolved by
    a person vs returned to the bot, outcomes; only the queues your key covers (and their
    total)."""
    return handoffs.metrics(agent, since=since)


@router.get("/{handoff_id}", response_model=HandoffPacket, responses=_ERRORS)
def get_handoff(handoff_id: HandoffId, handoffs: HandoffsDep, agent: InboxAgent
                ) -> HandoffPacket:
    """The handoff packet: summary, intent, stage, sentiment, reason codes, profile highlights,
    the customer's last messages on every channel, the timeline and the decision trace."""
    return handoffs.packet(agent, handoff_id)


@router.post("/{handoff_id}/claim", response_model=HandoffView, responses=_ERRORS)
def claim(handoff_id: HandoffId, handoffs: HandoffsDep, agent: InboxAgent) -> HandoffView:
    """Take the handoff. 409 if someone else has it; claiming your own again is a no-op."""
    return handoffs.claim(agent, handoff_id)


@router.post("/{handoff_id}/reply", response_model=HandoffEvent, responses=_ERRORS,
             status_code=201)
def reply(
    handoff_id: HandoffId, body: Text, handoffs: HandoffsDep, agent: InboxAgent,
    idempotency_key: IdempotencyKey = None,
) -> HandoffEvent:
    """Answer the customer on the channel they last wrote on (delivered through the outbox).
    You must hold the handoff. The policy checks consent, the channel and the content rules;
    a reply it would change or block is refused with 422 and the reason codes. Claims the
    knowledge base, the profile and the conversation do not support (a price, a code, a link)
    are listed in `body.grounding_warnings`: the reply still goes out as written."""
    return handoffs.reply(
        agent, handoff_id, body.text, idempotency_key=idempotency_key)


@router.post("/{handoff_id}/note", response_model=HandoffEvent, responses=_ERRORS,
             status_code=201)
def note(
    handoff_id: HandoffId, body: Text, handoffs: HandoffsDep, agent: InboxAgent,
    idempotency_key: IdempotencyKey = None,
) -> HandoffEvent:
    """An internal note (never sent to the customer); the bot reads it after the handback."""
    return handoffs.note(
        agent, handoff_id, body.text, idempotency_key=idempotency_key)


@router.post("/{handoff_id}/resolve", response_model=HandoffView, responses=_ERRORS)
def resolve(handoff_id: HandoffId, body: Resolution, handoffs: HandoffsDep,
            agent: InboxAgent) -> HandoffView:
    """Close the handoff you hold with an outcome; the bot owns the conversation again."""
    return handoffs.resolve(
        agent, handoff_id, body.outcome, note=body.note)


@router.post("/{handoff_id}/return-to-bot", response_model=HandoffView, responses=_ERRORS)
def return_to_bot(
    handoff_id: HandoffId, handoffs: HandoffsDep, agent: InboxAgent,
    body: HandBack | None = None,
) -> HandoffView:
    """Give the conversation back to the bot (an open handoff, or one you hold). The bot
    answers the customer's next message, with your notes in its context."""
    return handoffs.return_to_bot(
        agent, handoff_id, note=body.note if body else None)
