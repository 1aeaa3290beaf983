"""The graph's conditional edges."""

from __future__ import annotations

from typing import Literal

from agent.state import TurnState


def route_after_record(state: TurnState) -> Literal["await_approval", "__end__"]:
    """A turn with an action held for approval waits for a person; the others are done."""
    return "await_approval" if state.get("approval_id") else "__end__"


def route_understanding(state: TurnState) -> Literal["understand", "understand_signal"]:
    return "understand_signal" if state.get("trigger") else "understand"


def route_decision(state: TurnState) -> Literal["decide", "decide_journey"]:
    return "decide_journey" if state.get("trigger") else "decide"
