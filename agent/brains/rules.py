"""The rules brain: an offline decision maker with no LLM.

Intent comes from the nearest-neighbour signals, stage from the declared lifecycle rules,
replies from ``prompts/replies.yaml`` filled with answers from ``prompts/knowledge.yaml``.
It is the default when no LLM is configured and the fallback when the LLM fails.

What to do is decided by :data:`RULES`, an ordered table read top to bottom: the first
rule whose ``when`` holds for the turn builds the reply and the tool calls. Precedence is
the order of the table, so consent checks come first and the catch-all comes last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from agent.brains.base import BrainDecision, BrainInput, DecisionOutput
from agent.knowledge import ANSWER_SCORE, KnowledgeBase
from agent.language import DEFAULT_LANGUAGE, languages
from agent.understand import Signals
from core.domain import (
    BrainInfo,
    EscalateToHuman,
    IssueCredit,
    Priority,
    ProposedAction,
    Queue,
    UpdateCrm,
)
from prompts import load_yaml, render

#: Below this intent confidence the brain asks a clarifying question instead of acting.
LOW_CONFIDENCE = 0.35
#: Seats from which a buying signal goes to sales as high value.
HIGH_VALUE_SEATS = 50
SALES_TOPICS = {"pricing", "buying_signal", "demo_request"}
#: A paying customer who complains is offered this goodwill credit (a person approves it).
GOODWILL_CREDIT = 20.0
PAYING_STAGES = {"retention", "advocacy"}
#: A paying customer's message that is at least this much churn (one of the two best
#: intents) is read as churn risk.
CHURN_PRIOR = 0.25
ENTERPRISE_REQUIREMENTS = {"SSO", "SAML", "SCIM", "SOC 2", "quote", "contract", "data residency"}
#: A human request names its topic when the classifier is at least this sure of it.
TOPIC_SCORE = 0.3


@dataclass(frozen=True)
class Turn:
    """One turn as the rules see it: the brain's input and its reading of the intent.

    ``intent`` and ``confidence`` are the classifier's, except that a paying customer's
    churn talk overrides them (see :func:`_read_intent`).
    """

    brain: RulesBrain
    data: BrainInput
    intent: str
    confidence: float

    @property
    def signals(self) -> Signals:
        return self.data.signals

    @property
    def paying(self) -> bool:
        return self.data.profile.lifecycle_stage in PAYING_STAGES

    @property
    def negative(self) -> bool:
        return self.signals.sentiment == "negative"

    @cached_property
    def repeat(self) -> bool:
        """The customer has raised the same problem at least twice recently."""
        return _repeat_contacts(self.data, {"support_problem", "complaint"}) >= 2

    def say(self, key: str, **values: Any) -> str:
        """The reply template ``key`` filled for this customer."""
        return self.brain._say(key, self.data, **values)

    def answer(self, min_score: float = ANSWER_SCORE) -> str | None:
        """The knowledge-base answer to the message, if one is close enough."""
        return self.brain._answer(self.data, min_score)

    def escalate(self, queue: Queue, reason: str, priority: Priority = "normal") -> EscalateToHuman:
        """A hand-off to ``queue`` carrying the summary a person reads first."""
        return EscalateToHuman(
            queue=queue, reason=reason, summary=handoff_summary(self.data), priority=priority
        )


@dataclass
class Outcome:
    """What one rule decides: the reply, its tool calls, and what to write to the CRM.

    ``crm_fields``, ``note`` and ``task`` become a single ``update_crm`` call, put first.
    """

    reply: str
    actions: list[ProposedAction] = field(default_factory=list)
    crm_fields: dict[str, Any] = field(default_factory=dict)
    note: str | None = None
    task: str | None = None


@dataclass(frozen=True)
class Rule:
    """When ``when`` holds for the turn (and no earlier rule did), ``then`` decides it."""

    name: str
    when: Callable[[Turn], bool]
    then: Callable[[Turn], Outcome]


def _is(intent: str) -> Callable[[Turn], bool]:
    return lambda t: t.intent == intent


def _answer_or(key: str, fallback: str,
               min_score: float = ANSWER_SCORE) -> Callable[[Turn], Outcome]:
    """Reply with template ``key`` around the knowledge-base answer, else with ``fallback``."""

    def then(t: Turn) -> Outcome:
        answer = t.answer(min_score)
        return Outcome(t.say(key, answer=answer) if answer else t.say(fallback))

    return then


def _reply(key: str) -> Callable[[Turn], Outcome]:
    """Just reply with template ``key``, no tool calls."""
    return lambda t: Outcome(t.say(key))


def _high_value(signals: Signals) -> bool:
    return (signals.seats or 0) >= HIGH_VALUE_SEATS or bool(
        set(signals.requirements) & ENTERPRISE_REQUIREMENTS
    )


def _hand_to_human(t: Turn) -> Outcome:
    """Route to sales or support by the next best intent, naming it if the classifier is sure."""
    topic = t.signals.best_other_than("human_request", "small_talk", "off_topic")
    queue: Queue = "sales" if topic in SALES_TOPICS else "support"
    score = next((x.score for x in t.signals.intents if x.intent == topic), 0.0)
    about = f" about {topic.replace('_', ' ')}" if topic and score >= TOPIC_SCORE else ""
    reason = f"the customer asked for a human{about}"
    return Outcome(
        t.say(f"handoff_{queue}"),
        [t.escalate(queue, reason, "high" if t.negative else "normal")],
    )


def _buying(t: Turn, reply: str, task: str, actions: list[ProposedAction]) -> Outcome:
    """A buying signal of either size: record seats and needs, note it, set a task."""
    crm_fields: dict[str, Any] = {}
    if t.signals.seats:
        crm_fields["seats"] = t.signals.seats
    if t.signals.requirements:
        crm_fields["needs"] = t.signals.requirements
    note = f"Buying signal on {t.data.channel}: {t.data.text!r}"
    return Outcome(reply, actions, crm_fields, note=note, task=task)


def _quote_and_call(t: Turn) -> Outcome:
    seats, requirements = t.signals.seats, t.signals.requirements
    reqs = ", ".join(requirements) or "your team size"
    if seats:
        reqs = f"{seats} seats, {reqs}"
    return _buying(
        t,
        t.say("buying_signal", requirements=reqs),
        "Send a quote and book a call",
        [t.escalate("sales", _buying_reason(seats, requirements), "high")],
    )


def _follow_up_purchase(t: Turn) -> Outcome:
    reply = t.say("buying_signal_small", answer=t.answer(0.3) or "")
    return _buying(t, reply, "Follow up on purchase intent", [])


def _book_demo(t: Turn) -> Outcome:
    escalation = t.escalate("sales", "customer asked for a demo", "normal")
    return Outcome(t.say("demo_request"), [escalation], task="Schedule a demo")


def _support_to_human(t: Turn) -> Outcome:
    reason = "repeat support contact" if t.repeat else "frustrated customer"
    escalation = t.escalate("support", reason, "high" if t.negative else "normal")
    return Outcome(t.say("handoff_support"), [escalation])


def _complaint(t: Turn) -> Outcome:
    actions: list[ProposedAction] = [t.escalate("support", "complaint", "high")]
    if not t.paying:
        return Outcome(t.say("complaint"), actions)
    # a goodwill gesture for a paying customer; the policy holds it for a person
    actions.append(IssueCredit(amount=GOODWILL_CREDIT, reason=f"goodwill: {t.data.text[:200]}"))
    return Outcome(t.say("complaint_credit"), actions)


def _churn(t: Turn) -> Outcome:
    escalation = t.escalate("support", "churn risk: customer talks about leaving", "high")
    return Outcome(
        t.say("churn_generic"), [escalation], crm_fields={"churn_reason": t.data.text[:200]}
    )


def _promoter(t: Turn) -> Outcome:
    return Outcome(t.say("praise_referral"), note=f"Promoter signal: {t.data.text!r}")


def _unsure(t: Turn) -> bool:
    # a request for a person is honoured however unsure the classifier is
    return t.confidence < LOW_CONFIDENCE and t.intent != "human_request"


def _big_deal(t: Turn) -> bool:
    return t.intent == "buying_signal" and _high_value(t.signals)


def _support_needs_person(t: Turn) -> bool:
    return t.intent == "support_problem" and (t.repeat or t.negative)


def _other_language(t: Turn) -> bool:
    return t.signals.language != DEFAULT_LANGUAGE and t.signals.language in languages()


def _hand_over_language(t: Turn) -> Outcome:
    """The templates and the knowledge are in the company's language: say so in the
    customer's, and connect them with support (the intent examples are English, so the topic
    is not known well enough to pick sales)."""
    language = languages()[t.signals.language]
    reason = f"the customer writes in {language.name}"
    return Outcome(language.handover,
                   [t.escalate("support", reason, "high" if t.negative else "normal")])


def _first_hello(t: Turn) -> bool:
    return t.intent == "small_talk" and not t.data.recent


#: The decision table, first match wins. The consent and confidence gates come first and
#: turn a doubtful message into a question; below them each rule is keyed on one intent,
#: its special cases (a big deal, a repeat problem, a first hello) above its general case.
RULES: tuple[Rule, ...] = (
    # the policy reads this message as an opt-out
    Rule("opt-out", lambda t: t.data.opt_out, _reply("opt_out")),
    # the classifier thinks so, the policy does not: never tell them they are out
    Rule("unconfirmed opt-out", _is("opt_out"), _reply("clarify")),
    # the rules brain answers in the company's language only: it says so in theirs
    Rule("another language", _other_language, _hand_over_language),
    Rule("unsure", _unsure, _reply("clarify")),
    Rule("human request", _is("human_request"), _hand_to_human),
    Rule("high-value buying signal", _big_deal, _quote_and_call),
    Rule("buying signal", _is("buying_signal"), _follow_up_purchase),
    Rule("demo request", _is("demo_request"), _book_demo),
    Rule("pricing", _is("pricing"), _answer_or("pricing_intro", "answer_unknown", 0.35)),
    Rule("product question", _is("product_question"), _answer_or("answer", "answer_unknown")),
    Rule("repeat or frustrated problem", _support_needs_person, _support_to_human),
    Rule(
        "support problem",
        _is("support_problem"),
        _answer_or("support_problem", "support_generic", 0.5),
    ),
    Rule("complaint", _is("complaint"), _complaint),
    Rule("billing", _is("billing"), _answer_or("billing", "billing_generic", 0.4)),
    Rule("churn risk", _is("churn_risk"), _churn),
    Rule("praise or referral", _is("praise_referral"), _promoter),
    Rule("first hello", _first_hello, _reply("greeting")),
    Rule("small talk", _is("small_talk"), _reply("small_talk")),
    Rule("off topic", _is("off_topic"), _reply("off_topic")),
    Rule("anything else", lambda t: True, _reply("clarify")),
)


def first_match(turn: Turn, rules: tuple[Rule, ...] = RULES) -> Rule:
    """The first rule in ``rules`` whose condition holds for ``turn``."""
    return next(rule for rule in rules if rule.when(turn))


@dataclass
class RulesBrain:
    """Decides a turn by the first matching rule of :data:`RULES` (or of ``rules``)."""

    knowledge: KnowledgeBase
    templates: dict[str, str] = field(default_factory=lambda: dict(load_yaml("replies.yaml")))
    name: str = "rules"
    #: The decision table; only tests swap it, to show that its order is the precedence.
    rules: tuple[Rule, ...] = RULES

    def _say(self, key: str, data: BrainInput, **values: Any) -> str:
        first = data.profile.first_name
        values.setdefault("hello", f"Hi {first}," if first else "Hi,")
        template = self.templates[key]
        if "{company}" in template:
            values.setdefault("company", self.knowledge.company)
        return render(template, **{k: v for k, v in values.items() if "{" + k + "}" in template})

    def _answer(self, data: BrainInput, min_score: float = ANSWER_SCORE) -> str | None:
        # a follow-up that refers back ("does it include WhatsApp?") with its subject
        found = self.knowledge.lookup(data.signals.resolved or data.text, min_score=min_score)
        return found[0].answer if found else None

    def decide(self, data: BrainInput) -> BrainDecision:
        intent, confidence = _read_intent(data)
        turn = Turn(brain=self, data=data, intent=intent, confidence=confidence)
        outcome = first_match(turn, self.rules).then(turn)
        actions = list(outcome.actions)
        stage = data.rule_stage
        stage_change = stage if stage != data.profile.lifecycle_stage else None
        if stage_change or outcome.crm_fields or outcome.note or outcome.task:
            update = UpdateCrm(
                stage=stage_change, fields=outcome.crm_fields, note=outcome.note, task=outcome.task
            )
            actions.insert(0, update)
        output = DecisionOutput(
            intent=intent,
            stage=stage,
            sentiment=data.signals.sentiment,
            confidence=confidence,
            reply=outcome.reply,
            actions=actions,
        )
        return BrainDecision(output=output, info=BrainInfo(name="rules"))


def _read_intent(data: BrainInput) -> tuple[str, float]:
    """The classifier's intent and confidence, with a paying customer's churn read as such.

    For a paying customer, "switching to another vendor" is churn, not a purchase: churn
    wins when it is one of the two best intents and scores at least :data:`CHURN_PRIOR`.
    """
    signals = data.signals
    if data.profile.lifecycle_stage in PAYING_STAGES:
        runner_up = next((s for s in signals.intents[:2] if s.intent == "churn_risk"), None)
        if runner_up is not None and runner_up.score >= CHURN_PRIOR:
            return "churn_risk", max(runner_up.score, LOW_CONFIDENCE)
    return signals.intent, signals.confidence


def _buying_reason(seats: int | None, requirements: list[str]) -> str:
    parts = []
    if seats:
        parts.append(f"{seats} seats")
    if requirements:
        parts.append("needs " + ", ".join(requirements))
    return "high-value buying signal: " + ("; ".join(parts) or "enterprise interest")


def _repeat_contacts(data: BrainInput, intents: set[str]) -> int:
    """How many recent inbound messages (this one included) look like the same problem, or
    how many contacts the customer says this is ("the third time"), whichever is more."""
    similar = 1
    for hit in data.history:
        if hit.direction == "inbound" and hit.score > 0.55:
            similar += 1
    similar = max(similar, data.signals.claimed_contacts)
    return similar if data.signals.intent in intents else 0


def handoff_summary(data: BrainInput) -> str:
    profile = data.profile
    who = profile.name or profile.id
    lines = [
        f"{who} ({profile.lifecycle_stage}) on {data.channel}: {data.text}",
    ]
    if profile.attributes:
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(profile.attributes.items()))
        lines.append(f"Profile: {attrs}")
    earlier = [m for m in data.recent if m.direction == "inbound"][-3:]
    if earlier:
        lines.append("Earlier: " + " | ".join(f"[{m.channel}] {m.text}" for m in earlier))
    return "\n".join(lines)
