"""load_context: the unified profile, the conversation so far, related history and recent
signals."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from langgraph.runtime import Runtime

from agent.context import TurnServices
from agent.nodes.turn import state_maybe_inbound, state_trigger
from agent.state import TurnState

EVENT_WINDOW = timedelta(days=30)
#: a handback this recent is in the bot's context (the people's notes and replies)
HANDBACK_WINDOW = timedelta(days=7)


def load_context(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """The unified profile, the conversation so far, related history and recent signals."""
    svc = runtime.context
    inbound = state_maybe_inbound(state)
    profile = svc.store.get_customer(state["customer_id"])
    if profile is None:
        raise LookupError(f"customer {state['customer_id']} not found")
    this = inbound.id if inbound else None
    recent = [
        m
        for m in svc.store.messages(customer_id=profile.id, limit=svc.recent_limit + 1)
        if m.id != this
    ][-svc.recent_limit :]
    shown = {m.id for m in recent} | ({this} if this else set())
    query = inbound.text if inbound else str(state_trigger(state).get("description", ""))
    history = [
        h
        for h in svc.memory.search(profile.id, query, k=svc.history_k + len(shown))
        if h.id not in shown
    ][: svc.history_k]
    events = svc.store.recent_events(profile.id, since=svc.clock.now() - EVENT_WINDOW)
    handoff = svc.store.active_handoff(state["conversation_id"])
    # people handed the conversation back: their notes, and what they said (not to repeat)
    back = None if handoff else svc.store.handback(
        state["conversation_id"], since=svc.clock.now() - HANDBACK_WINDOW
    )
    return {
        "profile": profile.model_dump(mode="json"),
        "recent": [m.model_dump(mode="json") for m in recent],
        "history": [h.model_dump(mode="json") for h in history],
        "events": [e.model_dump(mode="json") for e in events],
        "active_handoff": handoff.model_dump(mode="json") if handoff else None,
        "handback": back.model_dump(mode="json") if back else None,
    }
