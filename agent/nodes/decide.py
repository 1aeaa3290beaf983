"""decide: one brain's decision (the rules brain, or an LLM)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.brains.base import BrainInput
from agent.brains.rules import handoff_summary
from agent.context import TurnServices
from agent.nodes.turn import state_inbound, state_profile
from agent.state import TurnState
from agent.understand import Signals
from core.domain import (
    Event,
    Handback,
    Handoff,
    Message,
    ProposedAction,
    SendMessage,
    UpdateCrm,
)
from core.ports import MemoryHit
from policy.brief import policy_brief


def decide(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """One brain decision: intent, stage, sentiment, reply and proposed tool calls."""
    svc = runtime.context
    inbound = state_inbound(state)
    handoff = Handoff.model_validate(state["active_handoff"]) if state["active_handoff"] else None
    policy = svc.policy.get()
    signals = Signals.model_validate(state["signals"])
    data = BrainInput(
        profile=state_profile(state),
        channel=inbound.channel,
        text=inbound.text,
        signals=signals,
        lifecycle=svc.lifecycle,
        rule_stage=state["rule_stage"],
        rule_name=state["rule_name"],
        recent=[Message.model_validate(m) for m in state["recent"]],
        history=[MemoryHit.model_validate(h) for h in state["history"]],
        events=[Event.model_validate(e) for e in state["events"]],
        active_handoff=handoff,
        writable_fields=tuple(policy.crm.writable_fields),
        policy_brief=policy_brief(policy),
        opt_out=state["opt_out"],
        handback=Handback.model_validate(state["handback"]) if state.get("handback") else None,
    )
    # while a human owns the conversation the bot only records: no model call is spent
    brain = svc.rules_brain if handoff is not None else svc.brain
    decided = brain.decide(data)
    output = decided.output
    stages = svc.lifecycle.stages
    if output.stage in stages and stages.index(output.stage) < stages.index(state["rule_stage"]):
        # the company's declared stage rules apply whoever decides; a model may only go further
        output = output.model_copy(update={"stage": state["rule_stage"]})
    proposed: list[ProposedAction] = []
    if output.reply:
        proposed.append(SendMessage(channel=inbound.channel, text=output.reply))
    proposed.extend(output.actions)
    rule_stage = state["rule_stage"]
    if handoff is None and rule_stage != data.profile.lifecycle_stage and not any(
        isinstance(a, UpdateCrm) and a.stage for a in proposed
    ):
        # a declared stage rule fired and the brain did not record it: record it (gated)
        crm = next((a for a in proposed if isinstance(a, UpdateCrm)), None)
        if crm is None:
            proposed.append(UpdateCrm(stage=rule_stage))
        else:
            proposed[proposed.index(crm)] = crm.model_copy(update={"stage": rule_stage})
    return {
        "output": output.model_dump(mode="json"),
        "brain": decided.info.model_dump(mode="json"),
        "proposed": [a.model_dump(mode="json") for a in proposed],
        "rejected": [r.model_dump(mode="json") for r in decided.rejected],
        "summary": handoff_summary(data),
    }
