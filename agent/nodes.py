"""The graph's nodes, one job each. A node returns only the state keys it changes."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import TypeAdapter

from agent.brains.base import BrainInput, DecisionOutput
from agent.brains.rules import handoff_summary
from agent.context import TurnServices
from agent.state import TurnState
from agent.understand import IntentScore, Signals, understand
from core.domain import (
    Approval,
    BrainInfo,
    Conversation,
    CustomerProfile,
    Decision,
    EscalateToHuman,
    Event,
    Handoff,
    Message,
    ProposedAction,
    RejectedCall,
    SendMessage,
    UpdateCrm,
    Verdict,
)
from core.effects import Activity, TurnEffects
from journey.handoffs import Handback, load_handback
from journey.journeys import Journey
from memory.vector import MemoryHit, MemoryRecord
from policy.brief import policy_brief
from policy.contact import SentRecord
from policy.engine import Facts, PolicyEngine, is_opt_in, is_opt_out, ledger_horizon
from policy.escalation import MessageFacts
from policy.later import APPROVED_BY, OPT_OUT_CONFIRMATION, LaterSend, recheck_later
from policy.model import Policy
from prompts import render
from tools import ToolContext, ToolError, run_tool

_ACTIONS: TypeAdapter[list[ProposedAction]] = TypeAdapter(list[ProposedAction])
_ACTION: TypeAdapter[ProposedAction] = TypeAdapter(ProposedAction)
EVENT_WINDOW = timedelta(days=30)
#: Earlier inbound messages this recent that resemble this one make it a repeat contact.
REPEAT_WINDOW = timedelta(days=14)
#: a handback this recent is in the bot's context (the people's notes and replies)
HANDBACK_WINDOW = timedelta(days=7)


def _profile(state: TurnState) -> CustomerProfile:
    return CustomerProfile.model_validate(state["profile"])


def _inbound(state: TurnState) -> Message:
    return Message.model_validate(state["inbound"])


def _maybe_inbound(state: TurnState) -> Message | None:
    """The message this turn answers; None for a proactive turn (a journey woke the agent)."""
    return Message.model_validate(state["inbound"]) if state.get("inbound") else None


def _source_id(state: TurnState) -> str:
    """What the turn is keyed by: the inbound message, or the job of a proactive turn."""
    inbound = state.get("inbound")
    return str(inbound["id"]) if inbound else str(_trigger(state)["job_id"])


def _trigger(state: TurnState) -> dict[str, Any]:
    trigger = state.get("trigger")
    if not trigger:
        raise LookupError("this turn was not woken by a journey")
    return trigger


def load_context(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """The unified profile, the conversation so far, related history and recent signals."""
    svc = runtime.context
    inbound = _maybe_inbound(state)
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
    query = inbound.text if inbound else str(_trigger(state).get("description", ""))
    history = [
        h
        for h in svc.memory.search(profile.id, query, k=svc.history_k + len(shown))
        if h.id not in shown
    ][: svc.history_k]
    events = svc.store.recent_events(profile.id, since=svc.clock.now() - EVENT_WINDOW)
    handoff = svc.store.active_handoff(state["conversation_id"])
    # people handed the conversation back: their notes, and what they said (not to repeat)
    back = None if handoff else load_handback(
        svc.store.engine, state["conversation_id"], since=svc.clock.now() - HANDBACK_WINDOW
    )
    return {
        "profile": profile.model_dump(mode="json"),
        "recent": [m.model_dump(mode="json") for m in recent],
        "history": [h.model_dump(mode="json") for h in history],
        "events": [e.model_dump(mode="json") for e in events],
        "active_handoff": handoff.model_dump(mode="json") if handoff else None,
        "handback": back.model_dump(mode="json") if back else None,
    }


def understand_message(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """Intent, sentiment and entities by code; the lifecycle stage by the declared rules."""
    svc = runtime.context
    inbound = _inbound(state)
    signals = understand(inbound.text, svc.classifier)
    events = [Event.model_validate(e) for e in state["events"]]
    stage, rule = svc.lifecycle.next_stage(
        _profile(state), signals.intent, events, svc.clock.now()
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


def decide(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """One brain decision: intent, stage, sentiment, reply and proposed tool calls."""
    svc = runtime.context
    inbound = _inbound(state)
    handoff = Handoff.model_validate(state["active_handoff"]) if state["active_handoff"] else None
    policy = svc.policy.get()
    signals = Signals.model_validate(state["signals"])
    data = BrainInput(
        profile=_profile(state),
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


def policy_gate(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """The policy engine gives every candidate a verdict with reason codes; nothing has run."""
    svc = runtime.context
    policy = svc.policy.get()
    now = svc.clock.now()
    inbound = _maybe_inbound(state)
    profile = _profile(state)
    signals = Signals.model_validate(state["signals"])
    esc = policy.escalation
    repeat = 1 + sum(
        1 for h in (MemoryHit.model_validate(x) for x in state["history"])
        if h.direction == "inbound" and h.score >= esc.repeat_similarity
        and h.created_at >= now - REPEAT_WINDOW
    )
    message = MessageFacts(
        text=inbound.text if inbound else "",
        intent=signals.intent,
        confidence=signals.confidence,
        sentiment=signals.sentiment,
        topic=signals.best_other_than("human_request", "small_talk", "off_topic", "opt_out"),
        seats=signals.seats,
        requirements=tuple(signals.requirements),
        repeat_contacts=repeat,
        stalled_turns=svc.store.stalled_turns(state["conversation_id"]),
        stage=profile.lifecycle_stage,
        opt_out=state["opt_out"],
        opt_in=state["opt_in"],
    )
    handoff = state["active_handoff"]
    ledger = _ledger(svc, profile.id, policy, now)
    result = PolicyEngine(policy).arbitrate(
        _ACTIONS.validate_python(state["proposed"]),
        Facts(
            profile=profile,
            message=message,
            inbound_channel=inbound.channel if inbound else None,
            now=now,
            stages=svc.lifecycle.stages,
            active_handoff=Handoff.model_validate(handoff) if handoff else None,
            ledger=ledger,
            summary=state.get("summary", ""),
            # a journey's declared actions are the company's, not the model's
            origin="model" if inbound else "system",
            human_said=tuple((state.get("handback") or {}).get("replies", ())),
            rule_stage=state["rule_stage"],
            customer_said=_customer_said(state),
        ),
    )
    return {
        "proposed": [a.model_dump(mode="json") for a in result.actions],
        "verdicts": [v.model_dump(mode="json") for v in result.verdicts],
        "approved": {str(i): a.model_dump(mode="json") for i, a in result.approved.items()},
        "held": {str(i): a.model_dump(mode="json") for i, a in result.held.items()},
        "consent_changes": result.consent_changes,
        "policy_inputs": result.inputs,
        "policy_version": policy.version,
    }


def _customer_said(state: TurnState) -> tuple[str, ...]:
    """The customer's own words: this message and the recent ones (quotes are not claims)."""
    inbound = state.get("inbound")
    earlier = [m["text"] for m in state.get("recent", []) if m.get("direction") == "inbound"]
    return tuple(earlier + ([inbound["text"]] if inbound else []))


def act(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """Run the approved WRITE tools and hold the ones that wait for a person. Their effects
    are committed with the decision."""
    svc = runtime.context
    effects = TurnEffects()
    inbound = _maybe_inbound(state)
    channel = inbound.channel if inbound else None
    consent = state["consent_changes"]
    effects.crm.consent.update(consent)  # type: ignore[arg-type]
    ctx = _tool_context(state, svc, effects)
    verdicts = [Verdict.model_validate(v) for v in state["verdicts"]]
    approval_id = None
    for verdict in verdicts:
        key = str(verdict.action_index)
        held = state["held"].get(key)
        if held is not None:
            approval_id = svc.ids("apv")
            verdict.approval_id = approval_id
            effects.approvals.append(
                Approval(
                    id=approval_id, decision_id=state["decision_id"],
                    conversation_id=state["conversation_id"], customer_id=state["customer_id"],
                    inbound_message_id=_source_id(state), action=held,
                    reason_codes=verdict.reason_codes, created_at=svc.clock.now(),
                    deliver_at=verdict.deliver_at,
                    is_reply=_is_reply(held, channel, verdict),
                )
            )
            continue
        approved = state["approved"].get(key)
        if approved is None:
            continue
        action = _ACTION.validate_python(approved)
        is_reply = _is_reply(approved, channel, verdict)
        run_ctx = replace(ctx, deliver_at=verdict.deliver_at, is_reply=is_reply)
        if "confirm" in verdict.modifications:
            # the relay lets this one message through the channel the customer just left
            run_ctx = replace(run_ctx, meta={**ctx.meta, OPT_OUT_CONFIRMATION: True})
        try:
            verdict.result = run_tool(action, run_ctx)
            verdict.executed = True
        except ToolError as exc:
            verdict.outcome = "deny"
            verdict.step = "execution"
            verdict.reason_codes.append("tool_error")
            verdict.detail = str(exc)
    if consent:
        effects.activities.append(Activity(id=svc.ids("act"), kind="consent", body=consent))
    return {
        "verdicts": [v.model_dump(mode="json") for v in verdicts],
        "effects": effects.model_dump(mode="json"),
        "approval_id": approval_id,
    }


def _is_reply(action: dict[str, Any], inbound: str | None, verdict: Verdict) -> bool:
    """The engine's reading: a message on the customer's channel, not marketing, not switched."""
    return (
        inbound is not None
        and action.get("tool") == "send_message" and action.get("channel") == inbound
        and action.get("purpose") != "marketing"
        and "switch_channel" not in verdict.modifications
    )


def respond(state: TurnState) -> dict[str, Any]:
    """The reply the customer sees now: the message that went out on their channel, if any."""
    inbound = _maybe_inbound(state)
    if inbound is None:
        return {"reply": None}  # a proactive turn answers nobody
    channel = inbound.channel
    effects = TurnEffects.model_validate(state["effects"])
    reply = next((o.text for o in effects.outbound if o.channel == channel), None)
    return {"reply": reply}


def record(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """Commit the decision with its effects in one transaction, then remember the messages."""
    svc = runtime.context
    inbound = _maybe_inbound(state)
    trigger = state.get("trigger")
    profile = _profile(state)
    output = DecisionOutput.model_validate(state["output"])
    verdicts = [Verdict.model_validate(v) for v in state["verdicts"]]
    effects = TurnEffects.model_validate(state["effects"])
    reasons = [f"intent:{output.intent}"]
    if trigger:
        reasons.append(f"journey:{trigger['journey']}")
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
        proposed=_ACTIONS.validate_python(state["proposed"]),
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


def route_after_record(state: TurnState) -> Literal["await_approval", "__end__"]:
    """A turn with an action held for approval waits for a person; the others are done."""
    return "await_approval" if state.get("approval_id") else "__end__"


def await_approval(state: TurnState) -> dict[str, Any]:
    """Pause the turn until a person approves or rejects (``Command(resume=...)``).

    The pause is a LangGraph interrupt saved by the checkpointer, so it survives a restart."""
    answer = interrupt({"approval_id": state["approval_id"]})
    return {"approval_answer": answer}


def execute_approval(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """The held action's side effect: runs once, after approval, in its own node."""
    approval_id = state.get("approval_id")
    if not approval_id:  # pragma: no cover - the router only comes here with one
        raise LookupError("no approval in this turn")
    approval = run_approval(runtime.context, approval_id, state["approval_answer"])
    return {"approval": approval.model_dump(mode="json")}


def run_approval(svc: TurnServices, approval_id: str, answer: dict[str, Any]) -> Approval:
    """Apply a person's answer to a held action, exactly once (the store guards the status)."""
    approval = svc.store.get_approval(approval_id)
    if approval is None:
        raise LookupError(f"approval {approval_id} not found")
    if approval.status != "pending":
        return approval
    by, note = str(answer.get("by") or "unknown"), answer.get("note")
    effects = TurnEffects()
    if not answer.get("approve"):
        return svc.store.decide_approval(
            approval, "rejected", by=by, note=note, result={}, effects=effects
        )
    check = recheck_later(
        svc.policy.get(), svc.lifecycle.stages, svc.store,
        LaterSend(kind="approval", action=_ACTION.validate_python(approval.action),
                  customer_id=approval.customer_id, conversation_id=approval.conversation_id,
                  is_reply=bool(approval.is_reply)),
        svc.clock.now(),
    )
    verdict, action, profile = check.verdict, check.action, check.profile
    if profile is None:
        raise LookupError(f"customer {approval.customer_id} not found")
    if action is None:
        return svc.store.decide_approval(
            approval, "blocked", by=by, note=note,
            result={"executed": False, "reason_codes": verdict.reason_codes,
                    "detail": verdict.detail},
            effects=effects,
        )
    conversation = svc.store.get_conversation(approval.conversation_id)
    if conversation is None:
        raise LookupError(f"conversation {approval.conversation_id} not found")
    ctx = ToolContext(
        profile=profile, conversation=conversation, inbound_channel=None,
        inbound_message_id=approval.inbound_message_id, decision_id=approval.decision_id,
        clock=svc.clock, ids=svc.ids, effects=effects, deliver_at=verdict.deliver_at,
        # the relay reads it: a person approved this message (an open handoff does not stop it)
        meta={APPROVED_BY: by},
    )
    result = run_tool(action, ctx)
    return svc.store.decide_approval(
        approval, "approved", by=by, note=note, result={"executed": True, **result},
        effects=effects,
    )


def _ledger(svc: TurnServices, customer_id: str, policy: Policy, now: datetime) -> list[SentRecord]:
    """What was sent or scheduled for the customer, as far back as the caps look."""
    return [
        SentRecord(e.channel, e.purpose, e.at, e.is_reply)
        for e in svc.store.ledger(customer_id, since=now - ledger_horizon(policy))
    ]


def _tool_context(state: TurnState, svc: TurnServices, effects: TurnEffects) -> ToolContext:
    inbound = _maybe_inbound(state)
    trigger = state.get("trigger") or {}
    return ToolContext(
        profile=_profile(state),
        conversation=_conversation_stub(state),
        inbound_channel=inbound.channel if inbound else None,
        inbound_message_id=_source_id(state),
        meta={"subject": trigger["subject"]} if trigger.get("subject") else {},
        decision_id=state["decision_id"],
        clock=svc.clock,
        ids=svc.ids,
        effects=effects,
    )


def _conversation_stub(state: TurnState) -> Conversation:
    profile = _profile(state)
    return Conversation(
        id=state["conversation_id"], customer_id=state["customer_id"], status="open",
        owner="human" if state["active_handoff"] else "bot",
        created_at=profile.created_at, updated_at=profile.updated_at,
    )


# --- proactive turns: a journey woke the agent --------------------------------------------


def understand_signal(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """A proactive turn has no message to read: the journey says what it is about, and the
    declared lifecycle rules read the customer's recent signals."""
    svc = runtime.context
    journey = _journey(state, svc)
    intent = journey.intent if journey else "proactive"
    events = [Event.model_validate(e) for e in state["events"]]
    stage, rule = svc.lifecycle.next_stage(_profile(state), None, events, svc.clock.now())
    signals = Signals(intents=[IntentScore(intent=intent, score=1.0)], sentiment="neutral")
    return {"signals": signals.model_dump(mode="json"), "rule_stage": stage,
            "rule_name": rule, "opt_out": False, "opt_in": False}


def decide_journey(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """The journey's declared actions, rendered for this customer. Proactive messages come
    from approved templates (as WhatsApp and marketing compliance require); whether any of
    it runs, on which channel and when, is the policy gate's call."""
    svc = runtime.context
    trigger = dict(_trigger(state))
    journey = _journey(state, svc)
    profile = _profile(state)
    proposed: list[ProposedAction] = []
    intent = journey.intent if journey else "proactive"
    # the handoff packet: the journey's description (copied into the trigger when it fired)
    summary = _journey_summary(str(trigger.get("description", "")), state)
    if journey is not None:
        steps = journey.actions
        if steps.escalate is not None:
            proposed.append(EscalateToHuman(
                queue=steps.escalate.queue, reason=steps.escalate.reason, summary=summary,
                priority=steps.escalate.priority,
            ))
        if steps.crm is not None:
            proposed.append(UpdateCrm(task=steps.crm.task, note=steps.crm.note,
                                      fields=dict(steps.crm.fields)))
        if steps.send is not None and svc.journeys is not None:
            template = svc.journeys.get().templates[steps.send.template]
            values = {"first_name": profile.first_name or "there",
                      "company": svc.company}
            text = render(template, **{k: v for k, v in values.items()
                                       if "{" + k + "}" in template})
            proposed.append(SendMessage(channel=steps.send.channel, text=text,
                                        purpose=steps.send.purpose))
            if steps.send.subject:
                trigger["subject"] = steps.send.subject
    rule_stage = state["rule_stage"]
    if rule_stage != profile.lifecycle_stage:
        crm = next((a for a in proposed if isinstance(a, UpdateCrm)), None)
        if crm is None:
            proposed.append(UpdateCrm(stage=rule_stage))
        else:
            proposed[proposed.index(crm)] = crm.model_copy(update={"stage": rule_stage})
    output = DecisionOutput(
        intent=intent, stage=rule_stage, sentiment="neutral", confidence=1.0, reply=None,
        actions=proposed,
    )
    info = BrainInfo(name="rules", model=f"journey:{trigger['journey']}")
    return {
        "trigger": trigger,
        "output": output.model_dump(mode="json"),
        "brain": info.model_dump(mode="json"),
        "proposed": [a.model_dump(mode="json") for a in proposed],
        "rejected": [],
        "summary": summary,
    }


def route_understanding(state: TurnState) -> Literal["understand", "understand_signal"]:
    return "understand_signal" if state.get("trigger") else "understand"


def route_decision(state: TurnState) -> Literal["decide", "decide_journey"]:
    return "decide_journey" if state.get("trigger") else "decide"


def _journey(state: TurnState, svc: TurnServices) -> Journey | None:
    if svc.journeys is None:
        return None
    return svc.journeys.get().get(str(_trigger(state)["journey"]))


def _journey_summary(why: str, state: TurnState) -> str:
    """The handoff packet of a proactive escalation: why, who, and the recent signals."""
    profile = _profile(state)
    scores = profile.attributes.get("intent_scores") or {}
    events = [Event.model_validate(e) for e in state["events"]][:5]
    seen = "; ".join(
        f"{e.type}{' ' + str(e.properties.get('page')) if e.properties.get('page') else ''}"
        f" at {e.occurred_at:%H:%M}"
        for e in events
    )
    parts = [why.strip(), f"Customer: {profile.name or profile.id}, stage "
             f"{profile.lifecycle_stage}."]
    if scores:
        parts.append("Intent scores: " + ", ".join(f"{k} {v}" for k, v in scores.items()) + ".")
    if seen:
        parts.append(f"Recent signals: {seen}.")
    return " ".join(p for p in parts if p)
