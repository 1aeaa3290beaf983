"""The small model's job (``JOURNEY_LLM_ROLE=write``): the rules decide, the model writes the
reply from the retrieved facts in one schema-constrained call, through the real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agent.brains.llm import LLMBrain
from agent.brains.rules import RulesBrain
from agent.brains.writer import REPLY_SCHEMA, WriterBrain
from agent.knowledge import KnowledgeBase
from core.settings import Settings
from journey.runtime import make_brain
from tests import fakes
from tests.conftest import ContainerFactory
from tests.server import running_server, turn


@pytest.fixture
def serve(make_container: ContainerFactory) -> Iterator[Any]:
    """``serve(*replies)``: the server with a writer model answering these, its URL and the
    model (its requests)."""
    stack: list[Any] = []

    def start(*replies: fakes.Reply) -> tuple[str, fakes.ScriptedModel]:
        model = fakes.ScriptedModel(*replies)
        container = make_container(brain="openai", llm_mode="json_schema", llm_role="write",
                                   llm_http_client=model.client())
        context = running_server(container)
        stack.append(context)
        return context.__enter__(), model

    yield start
    for context in stack:
        context.__exit__(None, None, None)


def _say(base: str, text: str) -> dict[str, Any]:
    return turn(base, text, "wc_writer")


def test_the_model_writes_the_answer_in_one_constrained_call(serve: Any) -> None:
    written = "Starter is $49/month: up to 3 seats, email and web chat, 5 active journeys."
    base, model = serve(fakes.content({"reply": written}))
    turn = _say(base, "What does the Starter plan include?")
    assert turn["reply"] == f"Hi, {written}"  # the draft's greeting is kept
    brain = turn["decision"]["brain"]
    assert (brain["name"], brain["role"], brain["llm_calls"], brain["repaired"],
            brain["fallback_reason"]) == ("openai", "write", 1, False, None)
    # decided by the rules and the classifier, not the model
    assert turn["decision"]["intent"] == "product_question"
    [request] = model.requests
    assert request["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "reply", "schema": REPLY_SCHEMA}}
    # the system prompt, the examples of prompts/writer_examples.yaml as earlier turns, then
    # this turn: the customer's message and the rules' draft (the retrieved answer), greeting off
    roles = [m["role"] for m in request["messages"]]
    assert roles[0] == "system" and roles[-1] == "user"
    assert roles[1:-1] == ["user", "assistant"] * ((len(roles) - 2) // 2) and len(roles) > 2
    prompt = request["messages"][-1]["content"]
    assert 'Customer: "What does the Starter plan include?"' in prompt
    assert 'Draft: "Starter ($49/month) includes up to 3 seats' in prompt
    assert "tools" not in request


def test_an_unusable_reply_is_not_repaired_the_draft_goes_out(serve: Any) -> None:
    base, model = serve(fakes.content({"reply": "what does the Starter plan include"}))
    turn = _say(base, "What does the Starter plan include?")
    assert turn["reply"].startswith("Hi, Starter ($49/month) includes up to 3 seats")
    brain = turn["decision"]["brain"]
    assert brain["llm_calls"] == 1 and not brain["repaired"]
    assert brain["fallback_reason"] == (
        "the model's reply was not used: it repeats the customer's message: "
        "'what does the Starter plan include'")  # what it wrote is kept with the reason
    assert len(model.requests) == 1


@pytest.mark.parametrize("text", ["STOP", "Can I talk to a person please?"])
def test_the_company_s_own_texts_are_not_rewritten(serve: Any, text: str) -> None:
    """An opt-out confirmation or a handoff acknowledgement: no model call at all."""
    base, model = serve()
    turn = _say(base, text)
    assert model.requests == []
    assert turn["decision"]["brain"]["llm_calls"] == 0
    assert turn["decision"]["brain"]["role"] == "write"


def test_a_reply_that_strays_from_the_answer_is_not_used(serve: Any) -> None:
    """No checkable claim, no plan named, no verdict: the meaning is not the draft's."""
    base, _ = serve(fakes.content({"reply": "It comes with it, along with everything else."}))
    turn = _say(base, "Does the Starter plan include WhatsApp?")
    assert "look at Growth" in turn["reply"]
    reason = turn["decision"]["brain"]["fallback_reason"]
    assert reason.startswith("the model's reply was not used: it strays from the answer")


STARTER = ("Starter ($49/month) includes up to 3 seats, the email and web chat channels, up to 5 "
           "active journeys and all native integrations. For SMS, WhatsApp, more seats or "
           "unlimited journeys, look at Growth.")


@pytest.mark.parametrize(("written", "reason"), [
    # a verdict the draft does not give, however close the rest is to it
    (f"Yes, WhatsApp is part of the Starter plan. {STARTER}",
     "it answers 'yes' where the draft does not"),
    # something new about a plan or product, without a verdict
    (f"WhatsApp is part of the Starter plan. {STARTER}",
     "it says something new about starter, whatsapp"),
])
def test_a_reply_that_says_more_than_the_draft_is_not_used(
    serve: Any, written: str, reason: str,
) -> None:
    """Measured with the embedded model: "yes, WhatsApp is part of the Starter plan." before
    the draft word for word, similar enough to it to pass."""
    base, _ = serve(fakes.content({"reply": written}))
    turn = _say(base, "Is WhatsApp part of the Starter plan?")
    assert turn["reply"] == f"Hi, {STARTER}"
    assert turn["decision"]["brain"]["fallback_reason"].startswith(
        f"the model's reply was not used: {reason}")


def test_what_the_writer_invents_is_still_grounded(serve: Any) -> None:
    """Close to the answer, with another price: the grounding rule catches the claim."""
    base, _ = serve(fakes.content({"reply": (
        "Starter ($19/month) includes up to 3 seats, the email and web chat channels, up to 5 "
        "active journeys and all native integrations.")}))
    turn = _say(base, "What does the Starter plan include?")
    [verdict] = [v for v in turn["decision"]["verdicts"] if v["tool"] == "send_message"]
    assert "ungrounded_claim" in verdict["reason_codes"]
    assert "$19" not in turn["reply"] and "$49" in turn["reply"]


def test_the_role_follows_the_model(knowledge: KnowledgeBase) -> None:
    rules = RulesBrain(knowledge)
    endpoint = Settings(_env_file=None, brain="openai",  # type: ignore[call-arg]
                        llm_base_url="http://127.0.0.1:9/v1")
    assert isinstance(make_brain(endpoint, rules, knowledge, {}), LLMBrain)
    assert isinstance(make_brain(endpoint, rules, knowledge, {}, name="local"), WriterBrain)
    # a local GGUF of a 7B model (4.4 GB) decides; the embedded 0.5B one (491 MB) writes
    assert isinstance(make_brain(endpoint, rules, knowledge, {}, name="local",
                                 model_bytes=4_400_000_000), LLMBrain)
    assert isinstance(make_brain(endpoint, rules, knowledge, {}, name="local",
                                 model_bytes=491_400_000), WriterBrain)
    chosen = endpoint.model_copy(update={"llm_role": "write"})
    assert isinstance(make_brain(chosen, rules, knowledge, {}), WriterBrain)
    chosen = endpoint.model_copy(update={"llm_role": "decide"})
    assert isinstance(make_brain(chosen, rules, knowledge, {}, name="local"), LLMBrain)
