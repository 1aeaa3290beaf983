"""Escalation rules: which facts of a turn send the conversation to a human, where and how fast.

The facts come from code (the intent classifier, the sentiment lexicon, entity extraction,
retrieved history), never from the model's answer, so a customer cannot talk the bot out of
escalating a legal threat or into escalating to the wrong queue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from core.domain import Priority, Queue, Sentiment
from policy.model import EscalationPolicy, EscalationRule


@dataclass(frozen=True)
class MessageFacts:
    """What code read off the message and the conversation."""

    text: str
    intent: str
    confidence: float
    sentiment: Sentiment
    #: The best intent other than human_request / small talk, for ``queue: auto``.
    topic: str | None = None
    seats: int | None = None
    requirements: tuple[str, ...] = ()
    repeat_contacts: int = 1
    #: Earlier consecutive turns of this conversation that made no progress.
    stalled_turns: int = 0
    stage: str = ""
    opt_out: bool = False
    opt_in: bool = False


@dataclass(frozen=True)
class Escalation:
    rule: str
    queue: Queue
    priority: Priority
    reason: str
    matched: list[str] = field(default_factory=list)


@lru_cache(maxsize=128)
def terms_pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    """Any of ``terms`` as whole words, case-insensitive, spaces matching any whitespace."""
    alternatives = "|".join(re.escape(t).replace(r"\ ", r"\s+") for t in terms)
    return re.compile(rf"(?<!\w)({alternatives})(?!\w)", re.IGNORECASE)


def stalled(facts: MessageFacts, policy: EscalationPolicy) -> bool:
    """This turn makes no progress: the bot does not understand what the customer wants."""
    return facts.confidence < policy.stall_confidence and facts.intent not in {
        "opt_out", "human_request", "small_talk"
    }


def _matches(rule: EscalationRule, facts: MessageFacts, policy: EscalationPolicy) -> list[str]:
    """What of the rule matched, or an empty list if the rule does not apply."""
    w = rule.when
    matched: list[str] = []
    if w.intents:
        if facts.intent not in w.intents:
            return []
        matched.append(f"intent={facts.intent}")
    if w.sentiment:
        if facts.sentiment != w.sentiment:
            return []
        matched.append(f"sentiment={facts.sentiment}")
    if w.min_repeat_contacts is not None:
        if facts.repeat_contacts < w.min_repeat_contacts:
            return []
        matched.append(f"repeat_contacts={facts.repeat_contacts}")
    if w.min_seats is not None:
        if (facts.seats or 0) < w.min_seats:
            return []
        matched.append(f"seats={facts.seats}")
    if w.requirements_any:
        wanted = {r.lower() for r in w.requirements_any}
        hits = [r for r in facts.requirements if r.lower() in wanted]
        if not hits:
            return []
        matched.append("requirements=" + ",".join(hits))
    if w.terms_any:
        hit = terms_pattern(tuple(w.terms_any)).search(facts.text)
        if not hit:
            return []
        matched.append(f"term={hit.group(0).lower()}")
    if w.confidence_below is not None:
        if facts.confidence >= w.confidence_below:
            return []
        matched.append(f"confidence={facts.confidence:.2f}")
    if w.min_confidence is not None:
        if facts.confidence < w.min_confidence:
            return []
        matched.append(f"confidence={facts.confidence:.2f}")
    if w.min_stalled_turns is not None:
        total = facts.stalled_turns + (1 if stalled(facts, policy) else 0)
        if total < w.min_stalled_turns:
            return []
        matched.append(f"stalled_turns={total}")
    if w.stages:
        if facts.stage not in w.stages:
            return []
        matched.append(f"stage={facts.stage}")
    return matched


def auto_queue(facts: MessageFacts, policy: EscalationPolicy) -> Queue:
    """Support terms first, then sales terms, then the message's best other intent."""
    def names(terms: list[str]) -> bool:
        return bool(terms) and terms_pattern(tuple(terms)).search(facts.text) is not None

    if names(policy.support_terms):
        return "support"
    if names(policy.sales_terms) or facts.topic in policy.sales_topics:
        return "sales"
    return "support"


def required_escalation(facts: MessageFacts, policy: EscalationPolicy) -> Escalation | None:
    """The first rule that matches, or None. An opt-out never escalates."""
    if facts.opt_out:
        return None
    for rule in policy.rules:
        matched = _matches(rule, facts, policy)
        if not matched:
            continue
        queue = auto_queue(facts, policy) if rule.queue == "auto" else rule.queue
        return Escalation(rule.name, queue, rule.priority, rule.reason, matched)
    return None
