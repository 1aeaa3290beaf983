"""A stage change as an event: ``stage_changed`` with ``{to, from?, because}``, for journeys
that enter on one (``trigger: {event: stage_changed, where: {to: decision}}``).

:class:`journey.signals.SignalService` ingests these events when the declared lifecycle rules
move a stage on an event, or a conversation's turn does (``Orchestrator.on_decided``), and only
while some journey is triggered by them; its id is derived from what moved the stage, so a
repeat is a duplicate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from core.domain import CustomerProfile, Decision
from journey.event_input import EventIn, EventResult
from policy.journeys import Journeys

STAGE_CHANGED = "stage_changed"
#: the identities an event may name its customer by
REFERABLE = ("email", "phone", "web_chat_id", "crm_id")


def wanted(journeys: Journeys) -> bool:
    """Whether an enabled journey enters on a stage change."""
    return any(j.enabled and j.trigger.event == STAGE_CHANGED for j in journeys.journeys)


def _id(source: str) -> str:
    return "stage-" + hashlib.sha256(source.encode()).hexdigest()[:32]


def from_events(valid: Sequence[tuple[int, EventIn, datetime]],
                results: Mapping[int, EventResult]) -> list[dict[str, Any]]:
    """The stage changes the accepted events made (not those made by a stage change)."""
    return [{
        "id": _id(event.id), "type": STAGE_CHANGED,
        "customer": event.customer.model_dump(exclude_none=True),
        "properties": {"to": results[index].stage, "because": event.type},
        "occurred_at": at.isoformat(),
    } for index, event, at in valid
        if results[index].status == "accepted" and results[index].stage
        and event.type != STAGE_CHANGED]


def from_decision(decision: Decision, profile: CustomerProfile | None) -> list[dict[str, Any]]:
    """The stage change a turn made, for a customer an event can name."""
    if decision.stage == decision.previous_stage or profile is None:
        return []
    identity = next((i for i in profile.identities if i.kind in REFERABLE), None)
    if identity is None:
        return []
    return [{
        "id": _id(decision.id), "type": STAGE_CHANGED,
        "customer": {identity.kind: identity.value},
        "properties": {"to": decision.stage, "from": decision.previous_stage,
                       "because": "conversation"},
        "occurred_at": decision.created_at.isoformat(),
    }]
