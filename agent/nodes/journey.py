"""Proactive turns, a journey woke the agent: understand_signal and decide_journey."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.brains.base import DecisionOutput
from agent.context import TurnServices
from agent.nodes.turn import state_profile, state_trigger
from agent.state import TurnState
from agent.understand import IntentScore, Signals
from core.domain import (
    BrainInfo,
    EscalateToHuman,
    Event,
    ProposedAction,
    SendMessage,
    UpdateCrm,
)
from policy.journeys import Actions, Journey
from prompts import render


def understand_signal(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """A proactive turn has no message to read: the journey says what it is about, and the
    declared lifecycle rules read the customer's recent signals."""
    svc = runtime.context
    journey = _journey(state, svc)
    intent = journey.intent if journey else "proactive"
    events = [Event.model_validate(e) for e in state["events"]]
    stage, rule = svc.lifecycle.next_stage(state_profile(state), None, events, svc.clock.now())
    signals = Signals(intents=[IntentScore(intent=intent, score=1.0)], sentiment="neutral")
    return {"signals": signals.model_dump(mode="json"), "rule_stage": stage,
            "rule_name": rule, "opt_out": False, "opt_in": False}


def decide_journey(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """The journey's declared actions, rendered for this customer. Proactive messages come
    from approved templates (as WhatsApp and marketing compliance require); whether any of
    it runs, on which channel and when, is the policy gate's call."""
    svc = runtime.context
    trigger = dict(state_trigger(state))
    journey = _journey(state, svc)
    profile = state_profile(state)
    proposed: list[ProposedAction] = []
    intent = journey.intent if journey else "proactive"
    # the handoff packet: the journey's description (copied into the trigger when it fired)
    summary = _journey_summary(str(trigger.get("description", "")), state)
    steps, templates = _actions(trigger, journey, svc)
    if steps is not None:
        if steps.escalate is not None:
            proposed.append(EscalateToHuman(
                queue=steps.escalate.queue, reason=steps.escalate.reason, summary=summary,
                priority=steps.escalate.priority,
            ))
        if steps.crm is not None:
            proposed.append(UpdateCrm(task=steps.crm.task, note=steps.crm.note,
                                      fields=dict(steps.crm.fields)))
        if steps.send is not None:
            template = templates[steps.send.template]
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


def _actions(trigger: dict[str, Any], journey: Journey | None,
             svc: TurnServices) -> tuple[Actions | None, dict[str, str]]:
    """The actions this wake-up proposes and the template texts: a step of a journey with
    steps carries its own (from the version the customer entered), a one-step journey's are
    the journey's as the file has them now."""
    if "action" in trigger:
        return Actions.model_validate(trigger["action"]), dict(trigger.get("templates") or {})
    if journey is None or journey.actions is None or svc.journeys is None:
        return None, {}
    return journey.actions, svc.journeys.get().templates


def _journey(state: TurnState, svc: TurnServices) -> Journey | None:
    if svc.journeys is None:
        return None
    return svc.journeys.get().get(str(state_trigger(state)["journey"]))


def _journey_summary(why: str, state: TurnState) -> str:
    """The handoff packet of a proactive escalation: why, who, and the recent signals."""
    profile = state_profile(state)
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
