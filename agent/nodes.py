"""The graph's nodes, one job each. A node returns only the state keys it changes."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from langgraph.runtime import Runtime
from pydantic import TypeAdapter

from agent.brains.base import BrainInput, DecisionOutput
from agent.context import TurnServices
from agent.state import TurnState
from agent.understand import Signals, understand
from journey.domain import (
    BrainInfo,
    Conversation,
    CustomerProfile,
    Decision,
    Event,
    Handoff,
    Message,
    ProposedAction,
    SendMessage,
    Verdict,
)
from journey.store import Activity, TurnEffects
from memory.vector import MemoryHit, MemoryRecord
from policy import gate
from tools import ToolContext, ToolError, run_tool

_ACTIONS: TypeAdapter[list[ProposedAction]] = TypeAdapter(list[ProposedAction])
_ACTION: TypeAdapter[ProposedAction] = TypeAdapter(ProposedAction)
EVENT_WINDOW = timedelta(days=30)


def _profile(state: TurnState) -> CustomerProfile:
    return CustomerProfile.model_validate(state["profile"])


def _inbound(state: TurnState) -> Message:
    return Message.model_validate(state["inbound"])


def load_context(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """The unified profile, the conversation so far, related history and recent signals."""
    svc = runtime.context
    inbound = _inbound(state)
    profile = svc.store.get_customer(state["customer_id"])
    if profile is None:
        raise LookupError(f"customer {state['customer_id']} not found")
    recent = [
        m
        for m in svc.store.messages(customer_id=profile.id, limit=svc.recent_limit + 1)
        if m.id != inbound.id
    ][-svc.recent_limit :]
    shown = {m.id for m in recent} | {inbound.id}
    history = [
        h
        for h in svc.memory.search(profile.id, inbound.text, k=svc.history_k + len(shown))
        if h.id not in shown
    ][: svc.history_k]
    events = svc.store.recent_events(profile.id, since=svc.clock.now() - EVENT_WINDOW)
    handoff = svc.store.active_handoff(state["conversation_id"])
    return {
        "profile": profile.model_dump(mode="json"),
        "recent": [m.model_dump(mode="json") for m in recent],
        "history": [h.model_dump(mode="json") for h in history],
        "events": [e.model_dump(mode="json") for e in events],
        "active_handoff": handoff.model_dump(mode="json") if handoff else None,
    }


def understand_message(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """Intent, sentiment and entities by code; the lifecycle stage by the declared rules."""
    svc = runtime.context
    signals = understand(_inbound(state).text, svc.classifier)
    events = [Event.model_validate(e) for e in state["events"]]
    stage, rule = svc.lifecycle.next_stage(
        _profile(state), signals.intent, events, svc.clock.now()
    )
    return {"signals": signals.model_dump(mode="json"), "rule_stage": stage, "rule_name": rule}


def decide(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """One brain decision: intent, stage, sentiment, reply and proposed tool calls."""
    svc = runtime.context
    inbound = _inbound(state)
    handoff = Handoff.model_validate(state["active_handoff"]) if state["active_handoff"] else None
    data = BrainInput(
        profile=_profile(state),
        channel=inbound.channel,
        text=inbound.text,
        signals=Signals.model_validate(state["signals"]),
        lifecycle=svc.lifecycle,
        rule_stage=state["rule_stage"],
        rule_name=state["rule_name"],
        recent=[Message.model_validate(m) for m in state["recent"]],
        history=[MemoryHit.model_validate(h) for h in state["history"]],
        events=[Event.model_validate(e) for e in state["events"]],
        active_handoff=handoff,
    )
    # while a human owns the conversation the bot only records: no model call is spent
    brain = svc.rules_brain if handoff is not None else svc.brain
    decided = brain.decide(data)
    output = decided.output
    proposed: list[ProposedAction] = []
    if output.reply:
        proposed.append(SendMessage(channel=inbound.channel, text=output.reply))
    proposed.extend(output.actions)
    return {
        "output": output.model_dump(mode="json"),
        "brain": decided.info.model_dump(mode="json"),
        "proposed": [a.model_dump(mode="json") for a in proposed],
    }


def policy_gate(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """Every proposed action gets a verdict with reason codes before anything runs."""
    svc = runtime.context
    output = DecisionOutput.model_validate(state["output"])
    handoff = state["active_handoff"]
    result = gate.evaluate(
        _ACTIONS.validate_python(state["proposed"]),
        gate.GateInput(
            profile=_profile(state),
            inbound_channel=_inbound(state).channel,
            intent=output.intent,
            stages=svc.lifecycle.stages,
            active_handoff=Handoff.model_validate(handoff) if handoff else None,
        ),
    )
    return {
        "verdicts": [v.model_dump(mode="json") for v in result.verdicts],
        "approved": {str(i): a.model_dump(mode="json") for i, a in result.approved.items()},
        "consent_changes": dict(result.consent_changes),
    }


def act(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """Run the approved WRITE tools. Their effects are committed with the decision."""
    svc = runtime.context
    effects = TurnEffects()
    effects.crm.consent.update(state["consent_changes"])  # type: ignore[arg-type]
    ctx = ToolContext(
        profile=_profile(state),
        conversation=_conversation_stub(state),
        inbound_channel=_inbound(state).channel,
        inbound_message_id=_inbound(state).id,
        decision_id=state["decision_id"],
        clock=svc.clock,
        ids=svc.ids,
        effects=effects,
    )
    verdicts = [Verdict.model_validate(v) for v in state["verdicts"]]
    for verdict in verdicts:
        approved = state["approved"].get(str(verdict.action_index))
        if approved is None:
            continue
        try:
            verdict.result = run_tool(_ACTION.validate_python(approved), ctx)
            verdict.executed = True
        except ToolError as exc:
            verdict.outcome = "deny"
            verdict.reason_codes.append("tool_error")
            verdict.detail = str(exc)
    if state["consent_changes"]:
        effects.activities.append(
            Activity(id=svc.ids("act"), kind="consent", body=dict(state["consent_changes"]))
        )
    return {
        "verdicts": [v.model_dump(mode="json") for v in verdicts],
        "effects": effects.model_dump(mode="json"),
    }


def respond(state: TurnState) -> dict[str, Any]:
    """The reply the customer sees now: the message that went out on their channel, if any."""
    channel = _inbound(state).channel
    effects = TurnEffects.model_validate(state["effects"])
    reply = next((o.text for o in effects.outbound if o.channel == channel), None)
    return {"reply": reply}


def record(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """Commit the decision with its effects in one transaction, then remember the messages."""
    svc = runtime.context
    inbound = _inbound(state)
    profile = _profile(state)
    output = DecisionOutput.model_validate(state["output"])
    verdicts = [Verdict.model_validate(v) for v in state["verdicts"]]
    effects = TurnEffects.model_validate(state["effects"])
    reasons = [f"intent:{output.intent}"]
    if state.get("rule_name"):
        reasons.append(f"stage_rule:{state['rule_name']}")
    brain = BrainInfo.model_validate(state["brain"])
    if brain.fallback_reason:
        reasons.append("brain_fallback")
    if state["active_handoff"]:
        reasons.append("human_owns_conversation")
    for v in verdicts:
        reasons.extend(f"{v.tool}:{code}" for code in v.reason_codes)
    stage = effects.crm.stage or profile.lifecycle_stage
    decision = Decision(
        id=state["decision_id"],
        conversation_id=state["conversation_id"],
        customer_id=profile.id,
        inbound_message_id=inbound.id,
        intent=output.intent,
        intent_confidence=output.confidence,
        stage=stage,
        previous_stage=profile.lifecycle_stage,
        sentiment=output.sentiment,
        proposed=_ACTIONS.validate_python(state["proposed"]),
        verdicts=verdicts,
        reasons=reasons,
        reply=state["reply"],
        brain=brain,
        latency_ms=round((time.perf_counter() - state["started"]) * 1000, 2),
        created_at=svc.clock.now(),
    )
    stored = svc.store.commit_turn(decision, effects)
    if stored.id == decision.id:
        records = [
            MemoryRecord(
                id=inbound.id, customer_id=profile.id, conversation_id=inbound.conversation_id,
                channel=inbound.channel, direction="inbound", text=inbound.text,
                created_at=inbound.created_at,
            )
        ] + [
            MemoryRecord(
                id=o.message_id, customer_id=profile.id, conversation_id=inbound.conversation_id,
                channel=o.channel, direction="outbound", text=o.text,
                created_at=decision.created_at,
            )
            for o in effects.outbound
        ]
        svc.memory.add(records)
    return {"decision": stored.model_dump(mode="json")}


def _conversation_stub(state: TurnState) -> Conversation:
    inbound = _inbound(state)
    return Conversation(
        id=state["conversation_id"], customer_id=state["customer_id"], status="open",
        owner="human" if state["active_handoff"] else "bot",
        created_at=inbound.created_at, updated_at=inbound.created_at,
    )
