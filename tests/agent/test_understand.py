"""The offline understanding: intent accuracy on held-out utterances, entities, sentiment."""

from __future__ import annotations

from pathlib import Path

import yaml

from agent.understand import IntentClassifier, requirements_in, seats_in, sentiment_of, understand

HOLDOUT = Path(__file__).parent.parent / "data" / "intent_holdout.yaml"


def test_intent_accuracy_on_held_out_utterances(classifier: IntentClassifier) -> None:
    holdout: dict[str, list[str]] = yaml.safe_load(HOLDOUT.read_text())
    cases = [(intent, text) for intent, texts in holdout.items() for text in texts]
    wrong = [(i, t, classifier.rank(t)[0].intent) for i, t in cases
             if classifier.rank(t)[0].intent != i]
    accuracy = 1 - len(wrong) / len(cases)
    assert len(cases) >= 80
    assert accuracy >= 0.88, wrong


def test_acceptance_utterances(classifier: IntentClassifier) -> None:
    invoice = understand("I want to talk to a person about my invoice", classifier)
    assert invoice.intent == "human_request"
    assert invoice.best_other_than("human_request", "small_talk", "off_topic") == "billing"
    assert understand("We're 500 seats and need SSO and a quote", classifier).intent == (
        "buying_signal"
    )
    assert understand("what does the Growth plan include?", classifier).intent == (
        "product_question"
    )


def test_opt_out_keywords_decide_whatever_the_neighbours_say(
    classifier: IntentClassifier,
) -> None:
    for text in ("STOP", "unsubscribe", "Stop texting me", "please remove me from your list"):
        signals = understand(text, classifier)
        assert (signals.intent, signals.opt_out_keyword) == ("opt_out", True), text
    assert understand("don't stop the webhooks", classifier).opt_out_keyword is False


def test_entities_and_sentiment() -> None:
    assert seats_in("We're 500 seats and need SSO") == 500
    assert seats_in("about 1,200 users") == 1200
    assert seats_in("no numbers here") is None
    assert requirements_in("need SSO via SAML and a quote") == ["SSO", "SAML", "quote"]
    assert sentiment_of("this is useless, I'm furious") == "negative"
    assert sentiment_of("thanks, that was helpful") == "positive"
    assert sentiment_of("what does growth include") == "neutral"
