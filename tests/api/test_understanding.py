"""What the bot understands of a message, through the real server (issue 17's findings):
negated and shouted sentiment, repeat-contact language, numbers with suffixes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from journey.runtime import Container
from tests.conftest import ContainerFactory
from tests.server import client, running_server


@pytest.fixture
def base(make_container: ContainerFactory) -> Iterator[str]:
    container: Container = make_container()
    with running_server(container) as url:
        yield url


def say(base: str, who: str, text: str) -> dict[str, object]:
    response = client(base).post("/v1/messages", json={
        "channel": "web_chat", "customer": {"web_chat_id": who}, "text": text})
    assert response.status_code == 200, response.text
    turn: dict[str, object] = response.json()
    return turn


@pytest.mark.parametrize("text", [
    "This is not great at all",
    "Thanks for nothing, the export is broken",
    "I would not recommend you",
])
def test_negated_and_sarcastic_messages_are_read_as_negative(base: str, text: str) -> None:
    turn = say(base, "wc_neg", text)
    decision = turn["decision"]
    assert isinstance(decision, dict)
    assert decision["sentiment"] == "negative", decision


def test_an_angry_repeated_complaint_gets_a_person_not_a_template(base: str) -> None:
    """No "bad" word, but capitals, "!!" and "third time": the customer is angry and says it
    is not their first contact. Read as a neutral question before, answered by a template."""
    turn = say(base, "wc_angry",
               "THE CSV EXPORT STILL DOES NOT WORK. THIS IS THE THIRD TIME I ASK!!")
    decision = turn["decision"]
    assert isinstance(decision, dict)
    assert decision["sentiment"] == "negative"
    assert {"sentiment:repeat_contact_3", "sentiment:shouting"} <= set(decision["reasons"])
    view = client(base).get(f"/v1/conversations/{turn['conversation_id']}").json()
    assert view["active_handoff"] is not None, decision
    assert view["active_handoff"]["queue"] == "support"


def test_a_number_with_a_suffix_is_not_inflated(base: str) -> None:
    """"about 1.5k users" became "5000 seats" in the reply and in the CRM."""
    turn = say(base, "wc_seats", "We're about 1.5k users and need SSO and a quote")
    reply = str(turn["reply"])
    assert "5000" not in reply and "5,000" not in reply
    customer = client(base).get(f"/v1/customers/{turn['customer_id']}").json()
    assert customer["profile"]["attributes"]["seats"] == 1500


@pytest.mark.parametrize(("text", "says"), [
    ("Quiero hablar con una persona, por favor", "solo puedo responder en inglés"),
    ("Je voudrais parler à un conseiller", "je ne peux répondre qu'en anglais"),
    ("¿Cuánto cuesta el plan Growth para mi equipo?", "solo puedo responder en inglés"),
])
def test_another_language_is_answered_in_it_and_handed_to_a_person(
    base: str, text: str, says: str,
) -> None:
    """A Spanish request for a person was read as off-topic and declined in English. The
    rules brain answers in the company's language only: it says so in the customer's, and a
    person takes the conversation."""
    turn = say(base, "wc_lang", text)
    assert says in str(turn["reply"])
    view = client(base).get(f"/v1/conversations/{turn['conversation_id']}").json()
    assert view["active_handoff"] is not None
    assert "writes in" in view["active_handoff"]["reason"]


def test_a_follow_up_on_another_channel_resolves_to_the_plan_asked_about(base: str) -> None:
    """"What does Starter include?" on web chat, then "Does it include WhatsApp?" by email:
    the follow-up was answered about Growth (its nearest knowledge entry alone)."""
    http = client(base)
    first = http.post("/v1/messages", json={
        "channel": "web_chat", "customer": {"web_chat_id": "wc_follow", "email": "fu@example.com"},
        "text": "What does the Starter plan include?"}).json()
    assert "Starter" in first["reply"]
    follow = http.post("/v1/messages", json={
        "channel": "email", "customer": {"email": "fu@example.com"},
        "text": "Does it include WhatsApp?"})
    assert follow.status_code == 200, follow.text
    turn = follow.json()
    assert turn["conversation_id"] == first["conversation_id"]
    assert "Starter ($49/month)" in turn["reply"], turn["reply"]
    assert "subject:plan=Starter" in turn["decision"]["reasons"]


@pytest.mark.parametrize("text", [
    "Thanks for nothing, the outage cost us a whole day",
    "This is not great at all, your product keeps losing our data",
])
def test_a_sarcastic_or_negated_complaint_goes_to_support(base: str, text: str) -> None:
    """Read as a pricing question and as praise before: no one took them."""
    turn = say(base, "wc_sarcasm", text)
    decision = turn["decision"]
    assert isinstance(decision, dict) and decision["intent"] == "complaint"
    view = client(base).get(f"/v1/conversations/{turn['conversation_id']}").json()
    assert view["active_handoff"] is not None and view["active_handoff"]["queue"] == "support"
