"""Promise: what the bot tells a customer is in the turn's sources, whatever the model says.

The embedded model stated a price that is not in the knowledge base, and offered a plan that
does not exist ("Sure, I can change my plan from Growth to Scale."). Here a scripted model
(json_schema mode, the production client) says such things through the real server; the
policy engine rewrites the reply from the retrieved answer, or to the safe template, with
``ungrounded_claim`` and the claim that failed on the decision. A reply whose claims are all in
the sources goes out as the model wrote it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from journey.runtime import Container
from tests import fakes
from tests.conftest import ContainerFactory
from tests.server import client, running_server


@pytest.fixture
def serve(make_container: ContainerFactory) -> Iterator[Any]:
    """``serve(reply)``: the server with a model that decides with this reply, its URL."""
    started: list[Any] = []

    def start(*replies: str) -> tuple[Container, str]:
        model = fakes.ScriptedModel(*[fakes.content(fakes.decision(
            intent="pricing", stage="consideration", reply=r)) for r in replies])
        container = make_container(brain="openai", llm_mode="json_schema",
                                   llm_http_client=model.client())
        context = running_server(container)
        started.append(context)
        return container, context.__enter__()

    yield start
    for context in started:
        context.__exit__(None, None, None)


def _ask(base: str, text: str, n: int = 0) -> dict[str, Any]:
    response = client(base).post("/v1/messages", json={
        "channel": "web_chat", "customer": {"web_chat_id": "wc_grounded"}, "text": text,
        "external_id": f"g-{n}"})
    assert response.status_code == 200, response.text
    turn: dict[str, Any] = response.json()
    return turn


def _send_verdict(turn: dict[str, Any]) -> dict[str, Any]:
    [verdict] = [v for v in turn["decision"]["verdicts"] if v["tool"] == "send_message"]
    return dict(verdict)


def _delivered(container: Container, turn: dict[str, Any]) -> list[str]:
    """What the customer was sent: the stored outbound messages and the outbox."""
    texts = [m.text for m in container.store.messages(customer_id=turn["customer_id"])
             if m.direction == "outbound"]
    texts += [row.text for row in container.store.outbox_queue.list()]
    return texts


def test_an_invented_price_code_and_link_are_never_sent(serve: Any) -> None:
    container, base = serve(
        "Growth is $299/month, and with the code VIP90 you pay less at https://pay.example.test.")
    turn = _ask(base, "How much is the Growth plan?")
    verdict = _send_verdict(turn)
    assert "ungrounded_claim" in verdict["reason_codes"]
    detail = " ".join(str(d) for d in verdict.values())
    assert "$299" in detail and "VIP90" in detail and "pay.example.test" in detail
    # rewritten from the retrieved answer: the knowledge base's price
    assert "$399" in turn["reply"]
    for text in [*_delivered(container, turn), turn["reply"]]:
        assert "$299" not in text and "VIP90" not in text and "pay.example.test" not in text
    # the entries retrieved for the message, with their scores, on the decision
    knowledge = turn["decision"]["inputs"]["knowledge"]
    assert knowledge[0]["id"] == "pricing-overview" and 0 < knowledge[0]["score"] <= 1
    assert len(knowledge) == 5


def test_a_plan_that_does_not_exist_is_not_offered(serve: Any) -> None:
    _, base = serve("Growth includes everything, and you can move up to the Scale plan today.")
    turn = _ask(base, "What does the Growth plan include?")
    verdict = _send_verdict(turn)
    assert "ungrounded_claim" in verdict["reason_codes"]
    assert "Scale" not in turn["reply"]


def test_a_price_the_customer_said_is_not_confirmed(serve: Any) -> None:
    """The customer says it first; the model agrees. A price needs the company's sources."""
    _, base = serve("Yes, Growth is $99 per month for you.")
    turn = _ask(base, "So Growth is $99 per month, right?")
    assert "ungrounded_claim" in _send_verdict(turn)["reason_codes"]
    assert "$99 " not in turn["reply"] + " " and "$99/" not in turn["reply"]


def test_a_grounded_reply_goes_out_as_written(serve: Any) -> None:
    reply = "Growth is $399/month with up to 25 seats; for 40 people, Enterprise fits."
    _, base = serve(reply)
    turn = _ask(base, "We're 40 people, how much is Growth?")
    assert "ungrounded_claim" not in _send_verdict(turn)["reason_codes"]
    assert turn["reply"] == reply


def test_a_persons_reply_gets_a_warning_not_a_rewrite(make_container: ContainerFactory) -> None:
    """People know things the knowledge base does not: their reply goes out as written, and
    the answer warns them which claims are not in the sources."""
    keys: dict[str, Any] = {"test-admin": ["admin"],
                            "alice-key": {"name": "Alice", "scopes": ["inbox"]}}
    container = make_container(api_keys=keys)
    with running_server(container) as base:
        admin, alice = client(base), client(base, "alice-key")
        turn = _ask(base, "Can I talk to a person please?")
        [handoff] = [h for h in admin.get("/v1/handoffs", params={"status": "active"}).json()
                     if h["customer_id"] == turn["customer_id"]]
        assert alice.post(f"/v1/handoffs/{handoff['id']}/claim").status_code == 200
        text = "Hi! For you Growth is $299/month with the code TEAM25."
        sent = alice.post(f"/v1/handoffs/{handoff['id']}/reply", json={"text": text})
        assert sent.status_code == 201, sent.text
        warnings = sent.json()["body"]["grounding_warnings"]
        assert any("$299" in w for w in warnings) and any("TEAM25" in w for w in warnings)
        assert text in [row.text for row in container.store.outbox_queue.list()]
        fine = alice.post(f"/v1/handoffs/{handoff['id']}/reply",
                          json={"text": "Growth is $399/month for up to 25 seats."})
        assert fine.status_code == 201 and fine.json()["body"]["grounding_warnings"] == []


def test_an_unsupported_reply_in_another_language_becomes_an_offer_in_that_language(
    serve: Any,
) -> None:
    """Measured with the embedded model deciding: to a Dutch pricing question it answered
    "€399". The rewrite is not the knowledge base's English answer: in Dutch, it cannot confirm
    that, and it offers a person."""
    container, base = serve("Het Growth-abonnement kost €399 per maand.")
    turn = _ask(base, "Wat kost het Growth-abonnement per maand?")
    verdict = _send_verdict(turn)
    assert "ungrounded_claim" in verdict["reason_codes"]
    assert "€399" in verdict["detail"]
    assert turn["reply"] == ("Sorry, dat kan ik op dit moment niet bevestigen. Zal ik u "
                             "doorverbinden met iemand van ons team?")
    assert all("€399" not in text for text in _delivered(container, turn))
