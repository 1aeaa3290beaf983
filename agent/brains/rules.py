"""The rules brain: an offline decision maker with no LLM.

Intent comes from the nearest-neighbour signals, stage from the declared lifecycle rules,
replies from ``prompts/replies.yaml`` filled with answers from ``prompts/knowledge.yaml``.
It is the default when no LLM is configured and the fallback when the LLM fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.brains.base import BrainDecision, BrainInput, DecisionOutput
from agent.understand import KnowledgeBase
from core.domain import (
    BrainInfo,
    EscalateToHuman,
    IssueCredit,
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


@dataclass
class RulesBrain:
    knowledge: KnowledgeBase
    templates: dict[str, str] = field(default_factory=lambda: dict(load_yaml("replies.yaml")))
    name: str = "rules"

    def _say(self, key: str, data: BrainInput, **values: Any) -> str:
        first = data.profile.first_name
        values.setdefault("hello", f"Hi {first}," if first else "Hi,")
        template = self.templates[key]
        if "{company}" in template:
            values.setdefault("company", self.knowledge.company)
        return render(template, **{k: v for k, v in values.items() if "{" + k + "}" in template})

    def _answer(self, data: BrainInput, min_score: float = 0.45) -> str | None:
        found = self.knowledge.lookup(data.text, min_score=min_score)
        return found[0].answer if found else None

    def decide(self, data: BrainInput) -> BrainDecision:
        signals = data.signals
        intent = signals.intent
        confidence = signals.confidence
        if data.profile.lifecycle_stage in PAYING_STAGES:
            # for a paying customer, "switching to another vendor" is churn, not a purchase
            runner_up = next((s for s in signals.intents[:2] if s.intent == "churn_risk"), None)
            if runner_up is not None and runner_up.score >= CHURN_PRIOR:
                intent, confidence = "churn_risk", max(runner_up.score, LOW_CONFIDENCE)
        actions: list[ProposedAction] = []
        crm_fields: dict[str, Any] = {}
        note: str | None = None
        task: str | None = None
        reply: str | None
        profile = data.profile
        summary = handoff_summary(data)

        def escalate(queue: Queue, reason: str, priority: str = "normal") -> None:
            actions.append(
                EscalateToHuman(
                    queue=queue, reason=reason, summary=summary,
                    priority=priority,  # type: ignore[arg-type]
                )
            )

        if data.opt_out:
            intent_used = "opt_out"
        elif intent == "opt_out":
            # the classifier thinks so, the policy does not: never tell them they are out
            intent_used = "clarify"
        elif confidence < LOW_CONFIDENCE and intent != "human_request":
            intent_used = "clarify"
        else:
            intent_used = intent

        if intent_used == "human_request":
            topic = signals.best_other_than("human_request", "small_talk", "off_topic")
            queue: Queue = "sales" if topic in SALES_TOPICS else "support"
            priority = "high" if signals.sentiment == "negative" else "normal"
            score = next((x.score for x in signals.intents if x.intent == topic), 0.0)
            about = f" about {topic.replace('_', ' ')}" if topic and score >= TOPIC_SCORE else ""
            escalate(queue, f"the customer asked for a human{about}", priority)
            reply = self._say(f"handoff_{queue}", data)
        elif intent_used == "buying_signal":
            if signals.seats:
                crm_fields["seats"] = signals.seats
            if signals.requirements:
                crm_fields["needs"] = signals.requirements
            high_value = (signals.seats or 0) >= HIGH_VALUE_SEATS or bool(
                set(signals.requirements) & ENTERPRISE_REQUIREMENTS
            )
            note = f"Buying signal on {data.channel}: {data.text!r}"
            if high_value:
                task = "Send a quote and book a call"
                escalate("sales", _buying_reason(signals.seats, signals.requirements), "high")
                reqs = ", ".join(signals.requirements) or "your team size"
                if signals.seats:
                    reqs = f"{signals.seats} seats, {reqs}"
                reply = self._say("buying_signal", data, requirements=reqs)
            else:
                task = "Follow up on purchase intent"
                reply = self._say(
                    "buying_signal_small", data, answer=self._answer(data, 0.3) or ""
                )
        elif intent_used == "demo_request":
            task = "Schedule a demo"
            escalate("sales", "customer asked for a demo", "normal")
            reply = self._say("demo_request", data)
        elif intent_used == "pricing":
            answer = self._answer(data, 0.35)
            reply = (
                self._say("pricing_intro", data, answer=answer)
                if answer
                else self._say("answer_unknown", data)
            )
        elif intent_used == "product_question":
            answer = self._answer(data)
            reply = (
                self._say("answer", data, answer=answer)
                if answer
                else self._say("answer_unknown", data)
            )
        elif intent_used == "support_problem":
            answer = self._answer(data, 0.5)
            repeat = _repeat_contacts(data, {"support_problem", "complaint"}) >= 2
            if repeat or signals.sentiment == "negative":
                escalate("support", "repeat support contact" if repeat else "frustrated customer",
                         "high" if signals.sentiment == "negative" else "normal")
                reply = self._say("handoff_support", data)
            elif answer:
                reply = self._say("support_problem", data, answer=answer)
            else:
                reply = self._say("support_generic", data)
        elif intent_used == "complaint":
            escalate("support", "complaint", "high")
            if profile.lifecycle_stage in PAYING_STAGES:
                # a goodwill gesture for a paying customer; the policy holds it for a person
                actions.append(
                    IssueCredit(amount=GOODWILL_CREDIT, reason=f"goodwill: {data.text[:200]}")
                )
                reply = self._say("complaint_credit", data)
            else:
                reply = self._say("complaint", data)
        elif intent_used == "billing":
            answer = self._answer(data, 0.4)
            reply = (
                self._say("billing", data, answer=answer)
                if answer
                else self._say("billing_generic", data)
            )
        elif intent_used == "opt_out":
            reply = self._say("opt_out", data)
        elif intent_used == "churn_risk":
            escalate("support", "churn risk: customer talks about leaving", "high")
            crm_fields["churn_reason"] = data.text[:200]
            reply = self._say("churn_generic", data)
        elif intent_used == "praise_referral":
            note = f"Promoter signal: {data.text!r}"
            reply = self._say("praise_referral", data)
        elif intent_used == "small_talk":
            reply = self._say("greeting" if not data.recent else "small_talk", data)
        elif intent_used == "off_topic":
            reply = self._say("off_topic", data)
        else:
            reply = self._say("clarify", data)

        stage = data.rule_stage
        stage_change = stage if stage != profile.lifecycle_stage else None
        if stage_change or crm_fields or note or task:
            actions.insert(
                0, UpdateCrm(stage=stage_change, fields=crm_fields, note=note, task=task)
            )
        output = DecisionOutput(
            intent=intent,
            stage=stage,
            sentiment=signals.sentiment,
            confidence=confidence,
            reply=reply,
            actions=actions,
        )
        return BrainDecision(output=output, info=BrainInfo(name="rules"))


def _buying_reason(seats: int | None, requirements: list[str]) -> str:
    parts = []
    if seats:
        parts.append(f"{seats} seats")
    if requirements:
        parts.append("needs " + ", ".join(requirements))
    return "high-value buying signal: " + ("; ".join(parts) or "enterprise interest")


def _repeat_contacts(data: BrainInput, intents: set[str]) -> int:
    """How many recent inbound messages (this one included) look like the same problem."""
    similar = 1
    for hit in data.history:
        if hit.direction == "inbound" and hit.score > 0.55:
            similar += 1
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
