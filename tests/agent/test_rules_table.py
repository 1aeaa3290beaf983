"""The rules brain's decision table: its order is the order of precedence."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.brains.base import BrainInput
from agent.brains.rules import RULES, RulesBrain, Turn
from agent.knowledge import KnowledgeBase
from agent.understand import IntentScore, Signals
from core.domain import CustomerProfile, EscalateToHuman, Sentiment
from memory.vector import MemoryHit
from policy.lifecycle import load_lifecycle

NOW = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def _input(
    *intents: tuple[str, float],
    text: str = "hello",
    stage: str = "consideration",
    sentiment: Sentiment = "neutral",
    opt_out: bool = False,
    history: list[MemoryHit] | None = None,
) -> BrainInput:
    profile = CustomerProfile(
        id="cus_1", name="Ada Lovelace", lifecycle_stage=stage, created_at=NOW, updated_at=NOW
    )
    signals = Signals(
        intents=[IntentScore(intent=i, score=s) for i, s in intents], sentiment=sentiment
    )
    return BrainInput(
        profile=profile, channel="email", text=text, signals=signals,
        lifecycle=load_lifecycle(), rule_stage=stage, rule_name=None,
        history=history or [], opt_out=opt_out,
    )


def _tools(brain: RulesBrain, data: BrainInput) -> list[str]:
    return [action.tool for action in brain.decide(data).output.actions]


def _matching(brain: RulesBrain, data: BrainInput) -> list[str]:
    """Every rule whose condition holds, in table order (the brain applies the first).

    Reads the classifier's intent as is: fine for the non-paying customers used here.
    """
    signals = data.signals
    turn = Turn(brain=brain, data=data, intent=signals.intent, confidence=signals.confidence)
    return [rule.name for rule in brain.rules if rule.when(turn)]


def test_the_table_ends_in_a_catch_all_and_names_are_unique(knowledge: KnowledgeBase) -> None:
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))
    data = _input(("no_such_intent", 0.9))
    assert _matching(RulesBrain(knowledge), data) == ["anything else"]
    assert RulesBrain(knowledge).decide(data).output.reply == (
        "Hi Ada, I want to make sure I get this right. Could you tell me a bit more about "
        "what you need?"
    )


def test_reordering_the_table_changes_the_decision(knowledge: KnowledgeBase) -> None:
    """A frustrated customer's problem matches two rules; whichever comes first decides."""
    data = _input(
        ("support_problem", 0.8), text="I can't log in to my account", sentiment="negative"
    )
    brain = RulesBrain(knowledge)
    assert _matching(brain, data) == [
        "repeat or frustrated problem", "support problem", "anything else"
    ]
    assert _tools(brain, data) == ["escalate_to_human"]
    escalation = brain.decide(data).output.actions[0]
    assert isinstance(escalation, EscalateToHuman)
    assert (escalation.reason, escalation.priority) == ("frustrated customer", "high")

    names = [rule.name for rule in RULES]
    special, general = names.index("repeat or frustrated problem"), names.index("support problem")
    swapped = list(RULES)
    swapped[special], swapped[general] = RULES[general], RULES[special]
    general_first = tuple(swapped)
    assert _tools(RulesBrain(knowledge, rules=general_first), data) == []


@pytest.mark.parametrize(
    ("data", "rule", "tools"),
    [
        # consent outranks everything, even a request for a person
        (_input(("human_request", 0.9), opt_out=True), "opt-out", []),
        # the classifier alone never opts anyone out: ask instead
        (_input(("opt_out", 0.9)), "unconfirmed opt-out", []),
        # an unsure reading is a question, unless they asked for a person
        (_input(("demo_request", 0.2)), "unsure", []),
        (_input(("human_request", 0.2)), "human request", ["escalate_to_human"]),
        # a repeat problem goes to a person even when the customer is calm
        (
            _input(
                ("support_problem", 0.8),
                history=[
                    MemoryHit(
                        id="h", customer_id="cus_1", conversation_id="c", channel="sms",
                        direction="inbound", text="still broken", created_at=NOW, score=0.9,
                    )
                ],
            ),
            "repeat or frustrated problem",
            ["escalate_to_human"],
        ),
    ],
)
def test_precedence_between_overlapping_rules(
    knowledge: KnowledgeBase, data: BrainInput, rule: str, tools: list[str]
) -> None:
    brain = RulesBrain(knowledge)
    assert _matching(brain, data)[0] == rule
    assert _tools(brain, data) == tools


def test_a_paying_customer_talking_of_switching_is_churn(knowledge: KnowledgeBase) -> None:
    intents = (("buying_signal", 0.5), ("churn_risk", 0.3))
    brain = RulesBrain(knowledge)
    paying = brain.decide(_input(*intents, text="we're switching vendors", stage="retention"))
    assert paying.output.intent == "churn_risk"
    assert paying.output.confidence == 0.35
    assert [a.tool for a in paying.output.actions] == ["update_crm", "escalate_to_human"]
    prospect = brain.decide(_input(*intents, text="we're switching vendors"))
    assert prospect.output.intent == "buying_signal"
