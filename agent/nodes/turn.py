"""What every node reads off the turn's state, and the context a tool runs in."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from agent.context import TurnServices
from agent.state import TurnState
from core.domain import (
    Conversation,
    CustomerProfile,
    Message,
    ProposedAction,
)
from core.effects import TurnEffects
from policy.contact import SentRecord
from policy.engine import ledger_horizon
from policy.model import Policy
from tools import ToolContext

ACTIONS: TypeAdapter[list[ProposedAction]] = TypeAdapter(list[ProposedAction])
ACTION: TypeAdapter[ProposedAction] = TypeAdapter(ProposedAction)


def state_profile(state: TurnState) -> CustomerProfile:
    return CustomerProfile.model_validate(state["profile"])


def state_inbound(state: TurnState) -> Message:
    return Message.model_validate(state["inbound"])


def state_maybe_inbound(state: TurnState) -> Message | None:
    """The message this turn answers; None for a proactive turn (a journey woke the agent)."""
    return Message.model_validate(state["inbound"]) if state.get("inbound") else None


def state_source_id(state: TurnState) -> str:
    """What the turn is keyed by: the inbound message, or the job of a proactive turn."""
    inbound = state.get("inbound")
    return str(inbound["id"]) if inbound else str(state_trigger(state)["job_id"])


def state_trigger(state: TurnState) -> dict[str, Any]:
    trigger = state.get("trigger")
    if not trigger:
        raise LookupError("this turn was not woken by a journey")
    return trigger


def conversation_stub(state: TurnState) -> Conversation:
    profile = state_profile(state)
    return Conversation(
        id=state["conversation_id"], customer_id=state["customer_id"], status="open",
        owner="human" if state["active_handoff"] else "bot",
        created_at=profile.created_at, updated_at=profile.updated_at,
    )


def sent_ledger(
    svc: TurnServices, customer_id: str, policy: Policy, now: datetime
) -> list[SentRecord]:
    """What was sent or scheduled for the customer, as far back as the caps look."""
    return [
        SentRecord(e.channel, e.purpose, e.at, e.is_reply)
        for e in svc.store.ledger(customer_id, since=now - ledger_horizon(policy))
    ]


def tool_context(state: TurnState, svc: TurnServices, effects: TurnEffects) -> ToolContext:
    inbound = state_maybe_inbound(state)
    trigger = state.get("trigger") or {}
    return ToolContext(
        profile=state_profile(state),
        conversation=conversation_stub(state),
        inbound_channel=inbound.channel if inbound else None,
        inbound_message_id=state_source_id(state),
        meta={"subject": trigger["subject"]} if trigger.get("subject") else {},
        decision_id=state["decision_id"],
        clock=svc.clock,
        ids=svc.ids,
        effects=effects,
    )
