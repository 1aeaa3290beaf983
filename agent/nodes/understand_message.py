"""understand: intent, sentiment and entities by code; the stage by the declared rules."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import TurnServices
from agent.nodes.turn import state_inbound, state_profile
from agent.state import TurnState
from agent.understand import seats_in, understand
from core.domain import (
    Event,
)
from policy.engine import is_opt_in, is_opt_out
from policy.escalation import MessageFacts


def understand_message(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """Intent, sentiment and entities by code; the lifecycle stage by the declared rules."""
    svc = runtime.context
    inbound = state_inbound(state)
    # the conversation's subject from what the customer wrote before (all channels)
    earlier = [m["text"] for m in state.get("recent", []) if m.get("direction") == "inbound"]
    reader = svc.knowledge.subject if svc.knowledge is not None else None
    subject = reader.subject(earlier, [seats_in(t) for t in earlier]) if reader else {}
    signals = understand(inbound.text, svc.classifier, subject=subject, reader=reader)
    events = [Event.model_validate(e) for e in state["events"]]
    stage, rule = svc.lifecycle.next_stage(
        state_profile(state), signals.intent, events, svc.clock.now()
    )
    # the policy's reading of consent words, once: the brain and the gate both follow it
    policy = svc.policy.get()
    said = MessageFacts(text=inbound.text, intent=signals.intent,
                        confidence=signals.confidence, sentiment=signals.sentiment)
    return {
        "signals": signals.model_dump(mode="json"), "rule_stage": stage, "rule_name": rule,
        "opt_out": is_opt_out(inbound.text, said, policy, inbound.channel),
        "opt_in": is_opt_in(inbound.text, policy, inbound.channel),
    }
