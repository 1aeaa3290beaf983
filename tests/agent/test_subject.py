"""The conversation's subject and follow-ups that refer back (agent/subject.py)."""

from __future__ import annotations

import pytest

from agent.knowledge import KnowledgeBase
from agent.subject import SubjectReader
from agent.understand import IntentClassifier, understand

READER = SubjectReader(plans=["Starter", "Growth", "Enterprise"],
                       products=["Salesforce", "HubSpot", "WhatsApp", "REST API"])


def test_the_subject_is_the_latest_mention_of_each_kind() -> None:
    said = ["What does the Starter plan include?", "and does it sync with HubSpot?",
            "my order #A12345 was charged twice", "actually, tell me about Growth"]
    assert READER.subject(said, seats=[None, 40]) == {
        "plan": "Growth", "product": "HubSpot", "order": "order A12345", "seats": 40}


@pytest.mark.parametrize(("text", "resolved"), [
    ("Does it include WhatsApp?", "Does it include WhatsApp? (Starter plan)"),
    ("How much is that plan per month?", "How much is that plan per month? (Starter plan)"),
    ("When will the order arrive?", "When will the order arrive? (order A12345)"),
    ("Is that plan billed monthly?", "Is that plan billed monthly? (Starter plan)"),
    # names its own subject, or does not refer back: unchanged
    ("Does Growth include WhatsApp?", "Does Growth include WhatsApp?"),
    ("Do you integrate with Salesforce?", "Do you integrate with Salesforce?"),
    ("thanks, that helps!", "thanks, that helps!"),
    ("The export has failed since Monday and I need it for the board meeting tomorrow "
     "morning, can you fix it today please?", "The export has failed since Monday and I need "
     "it for the board meeting tomorrow morning, can you fix it today please?"),
])
def test_a_follow_up_that_refers_back_is_resolved(text: str, resolved: str) -> None:
    subject = {"plan": "Starter", "order": "order A12345"}
    assert READER.resolve(text, subject)[0] == resolved


def test_nothing_to_resolve_without_a_subject() -> None:
    assert READER.resolve("Does it include WhatsApp?", {}) == ("Does it include WhatsApp?", {})


def test_an_opt_out_or_a_request_for_a_person_is_read_as_written(
    classifier: IntentClassifier, knowledge: KnowledgeBase,
) -> None:
    subject = {"plan": "Starter"}
    follow = understand("Does it include WhatsApp?", classifier, subject=subject,
                        reader=knowledge.subject)
    assert (follow.intent, follow.referred) == ("product_question", {"plan": "Starter"})
    assert follow.resolved == "Does it include WhatsApp? (Starter plan)"
    for text in ("stop it", "I want to talk to a person about it"):
        signals = understand(text, classifier, subject=subject, reader=knowledge.subject)
        assert signals.intent in ("opt_out", "human_request") and signals.referred == {}, text
        assert signals.resolved is None
