"""respond: the reply the customer sees now."""

from __future__ import annotations

from typing import Any

from agent.nodes.turn import state_maybe_inbound
from agent.state import TurnState
from core.effects import TurnEffects


def respond(state: TurnState) -> dict[str, Any]:
    """The reply the customer sees now: the message that went out on their channel, if any."""
    inbound = state_maybe_inbound(state)
    if inbound is None:
        return {"reply": None}  # a proactive turn answers nobody
    channel = inbound.channel
    effects = TurnEffects.model_validate(state["effects"])
    reply = next((o.text for o in effects.outbound if o.channel == channel), None)
    return {"reply": reply}
