"""record: the decision and its effects in one transaction, then the messages in memory."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from agent.brains.base import DecisionOutput
from agent.context import TurnServices
from agent.nodes.turn import ACTIONS, state_maybe_inbound, state_profile
from agent.state import TurnState
from core.domain import (
    BrainInfo,
    Decision,
    RejectedCall,
    Verdict,
)
from core.effects import TurnEffects
from core.ports import MemoryRecord


def record(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """Commit the decision with its effects in one transaction, then remember the messages."""
    svc = runtime.context
    inbound = state_maybe_inbound(state)
    trigger = state.get("trigger")
    profile = state_profile(state)
    output = DecisionOutput.model_validate(state["output"])
    verdicts = [Verdict.model_validate(v) for v in state["verdicts"]]
    effects = TurnEffects.model_validate(state["effects"])
    reasons = [f"intent:{output.intent}"]
    # why the message read as it did (frustration, shouting, "third time")
    read = state.get("signals") or {}
    reasons.extend(f"sentiment:{m}" for m in read.get("mood", []))
    # what a follow-up referred back to ("does it include WhatsApp?" after Starter)
    reasons.extend(f"subject:{k}={v}" for k, v in read.get("referred", {}).items())
    if trigger:
        reasons.append(f"journey:{trigger['journey']}")
        if trigger.get("step"):
            reasons.append(f"journey_step:{trigger['step']}")
        reasons.extend(f"cancelled_job:{j}" for j in trigger.get("cancelled_jobs", []))
    if state.get("rule_name"):
        reasons.append(f"stage_rule:{state['rule_name']}")
    brain = BrainInfo.model_validate(state["brain"])
    if brain.fallback_reason:
        reasons.append("brain_fallback")
    if state["active_handoff"]:
        reasons.append("human_owns_conversation")
    inputs = state.get("policy_inputs", {})
    if inputs.get("stalled"):
        reasons.append("no_progress")
    if inputs.get("escalation_rule"):
        reasons.append(f"escalation_rule:{inputs['escalation_rule']['name']}")
    rejected = [RejectedCall.model_validate(r) for r in state.get("rejected", [])]
    for r in rejected:
        reasons.extend(f"{r.tool}:{code}" for code in r.reason_codes)
    for v in verdicts:
        reasons.extend(f"{v.tool}:{code}" for code in v.reason_codes)
    stage = effects.crm.stage or profile.lifecycle_stage
    decision = Decision(
        id=state["decision_id"],
        conversation_id=state["conversation_id"],
        customer_id=profile.id,
        inbound_message_id=inbound.id if inbound else None,
        job_id=trigger["job_id"] if trigger else None,
        trigger=trigger,
        intent=output.intent,
        intent_confidence=output.confidence,
        stage=stage,
        previous_stage=profile.lifecycle_stage,
        sentiment=output.sentiment,
        proposed=ACTIONS.validate_python(state["proposed"]),
        verdicts=verdicts,
        reasons=reasons,
        reply=state["reply"],
        brain=brain,
        latency_ms=round((time.perf_counter() - state["started"]) * 1000, 2),
        created_at=svc.clock.now(),
        inputs=inputs,
        policy_version=state.get("policy_version", ""),
        rejected=rejected,
    )
    stored = svc.store.commit_turn(decision, effects)
    if stored.id == decision.id:
        records = [
            MemoryRecord(
                id=inbound.id, customer_id=profile.id, conversation_id=inbound.conversation_id,
                channel=inbound.channel, direction="inbound", text=inbound.text,
                created_at=inbound.created_at,
            )
        ] if inbound else []
        records += [
            MemoryRecord(
                id=o.message_id, customer_id=profile.id,
                conversation_id=state["conversation_id"],
                channel=o.channel, direction="outbound", text=o.text,
                created_at=decision.created_at,
            )
            for o in effects.outbound
        ]
        svc.memory.add(records)
    return {"decision": stored.model_dump(mode="json")}
