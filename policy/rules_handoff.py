"""The verdict on an escalation (``escalate_to_human``): one per turn and none while a handoff
is open; an escalation rule decides the queue and priority (a model may ask for less, never for
more); the handoff's reason and summary pass the content rules; the routing rules pick the
queue a person works it from."""

from __future__ import annotations

from typing import Any

from core.domain import EscalateToHuman, Priority
from policy.escalation import Escalation, auto_queue
from policy.facts import Facts, Judgement, TurnState
from policy.model import Policy
from policy.rules_text import free_text

PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high", "urgent")
MAX_HANDOFF_TEXT = 4000


def _merge_reasons(rule: str, model: str) -> str:
    """The rule's reason and the model's, once: when one says what the other says, the longer."""
    def plain(text: str) -> str:
        return " ".join(text.lower().removeprefix("the ").split())

    a, b = plain(rule), plain(model)
    if a in b or b in a:
        return model if len(b) > len(a) else rule
    return f"{rule} ({model})"


def _number(value: Any) -> float | None:
    """A profile attribute as a number (``"12000"`` and ``12000`` alike), else None."""
    if isinstance(value, bool):
        return None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def judge_escalation(
    policy: Policy,
    action: EscalateToHuman,
    facts: Facts,
    rule: Escalation | None,
    state: TurnState,
) -> Judgement:
    j = Judgement(final=action)
    if facts.active_handoff is not None:
        return j.deny("eligibility", "already_escalated",
                      "the conversation already has an open handoff")
    if state.escalating:
        return j.deny("priority", "duplicate_action", "one escalation per turn")
    if rule is None and not policy.escalation.allow_model_escalation:
        return j.deny("eligibility", "no_escalation_rule", "no escalation rule matched")
    reason, summary = handoff_text(policy, action, facts, rule, j)
    asked = PRIORITIES.index(action.priority)
    if rule is not None:
        # the rule decides the priority: a model may ask for less, never for more
        final = action.model_copy(update={
            "queue": rule.queue, "priority": rule.priority,
            "reason": _merge_reasons(rule.reason, reason)[:MAX_HANDOFF_TEXT],
            "summary": summary[:MAX_HANDOFF_TEXT],
        })
        j.codes.append(f"escalation_rule:{rule.rule}")
        if final.queue != action.queue or PRIORITIES.index(final.priority) > asked:
            j.modify("eligibility", "reroute", "rerouted_by_rule",
                     f"{action.queue}/{action.priority} → {final.queue}/{final.priority}")
    else:
        j.codes.append("model_escalation")
        cap = policy.escalation.max_model_priority
        final = action.model_copy(update={
            "priority": min(action.priority, cap, key=PRIORITIES.index),
            "reason": reason[:MAX_HANDOFF_TEXT], "summary": summary[:MAX_HANDOFF_TEXT],
        })
    if PRIORITIES.index(final.priority) < asked:
        j.modify("eligibility", "reroute", "priority_capped",
                 f"{action.priority} asked, {final.priority} given "
                 + (f"(escalation rule {rule.rule})" if rule else "(the policy's "
                    "max_model_priority)"))
    j.final = route_handoff(policy, final, facts, j)
    state.escalating = True
    return j


def handoff_text(
    policy: Policy, action: EscalateToHuman, facts: Facts, rule: Escalation | None,
    j: Judgement,
) -> tuple[str, str]:
    """The handoff's reason and summary as a person will read them: what the model wrote,
    unless it breaks the content rules (then the rule's reason and the packet code built)."""
    fallback = rule.reason if rule else "escalated by the model (its reason was withheld)"
    reason = free_text(policy, action.reason, "reason", facts, j, fallback)
    summary = action.summary
    if summary != facts.summary:  # the packet built by code is not the model's text
        summary = free_text(policy, summary, "summary", facts, j,
                            facts.summary or facts.message.text or fallback)
    return reason, summary


def route_handoff(
    policy: Policy, action: EscalateToHuman, facts: Facts, j: Judgement
) -> EscalateToHuman:
    """The queue a handoff goes to: a known queue, then the first routing rule (by the
    message's intent, the customer's stage and value, the priority) that matches."""
    handoff = policy.handoff
    if action.queue not in handoff.queues:
        queue = auto_queue(facts.message, policy.escalation)
        j.modify("eligibility", "reroute", "unknown_queue",
                 f"no queue {action.queue!r}; {queue} instead")
        action = action.model_copy(update={"queue": queue})
    value = _number(facts.profile.attributes.get(handoff.value_attribute))
    intents = {facts.message.intent, facts.message.topic}
    for rule in handoff.routing:
        when = rule.when
        if (
            (when.queues and action.queue not in when.queues)
            or (when.intents and not intents & set(when.intents))
            or (when.stages and facts.profile.lifecycle_stage not in when.stages)
            or (when.min_value is not None and (value is None or value < when.min_value))
            or (when.priorities and action.priority not in when.priorities)
        ):
            continue
        priority = max(action.priority, rule.priority or action.priority,
                       key=PRIORITIES.index)
        j.codes.append(f"routed:{rule.name}")
        if (rule.queue, priority) != (action.queue, action.priority):
            j.modify("eligibility", "reroute", "rerouted_by_routing",
                     f"{action.queue}/{action.priority} → {rule.queue}/{priority}")
        return action.model_copy(update={"queue": rule.queue, "priority": priority})
    return action
