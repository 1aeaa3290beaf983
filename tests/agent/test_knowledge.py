"""A company's own knowledge base: validated line by line, retrieved per message, and, when it
is large, handed to the model as the entries retrieved for the message, which are then all
the grounding rule accepts from it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.knowledge import IN_PROMPT, KnowledgeBase, KnowledgeInvalid, load_knowledge
from memory.embeddings import MiniLMEmbedder
from tests import fakes
from tests.conftest import ContainerFactory
from tests.server import running_server, turn

#: add-ons with their own prices, enough to make the demo base larger than IN_PROMPT
ADD_ONS = ("Falcon", "Heron", "Otter", "Badger", "Lynx", "Marten", "Osprey", "Puffin", "Walrus",
           "Bison", "Coyote", "Dingo", "Ferret", "Gecko", "Ibis", "Jackal", "Koala", "Lemur",
           "Mink", "Newt", "Ocelot", "Panda", "Quokka", "Raven", "Stoat", "Tapir", "Urial", "Vole",
           "Wombat", "Yak", "Zebu", "Alpaca", "Beaver", "Cobra", "Drake", "Egret", "Finch",
           "Gibbon", "Hyena", "Impala")


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'journey.sqlite'}"


def _with_add_ons() -> dict[str, Any]:
    data = load_knowledge()
    data["entries"] += [
        {"id": f"addon-{name.lower()}", "topic": "pricing",
         "questions": [f"what does the {name} add-on cost?", f"{name} add-on price",
                       f"how much is {name}"],
         "answer": f"The {name} add-on costs ${101 + i}/month on any plan."}
        for i, name in enumerate(ADD_ONS)]
    return data


@pytest.fixture(scope="module")
def large(embedder: MiniLMEmbedder) -> KnowledgeBase:
    kb = KnowledgeBase(embedder, _with_add_ons())
    assert len(kb.entries) > IN_PROMPT and not kb.whole_in_prompt
    return kb


@pytest.fixture
def serve(make_container: ContainerFactory) -> Iterator[Any]:
    """``serve(knowledge, reply)``: the real server, a decision model answering ``reply``."""
    stack: list[Any] = []

    def start(knowledge: KnowledgeBase, reply: str) -> tuple[str, fakes.ScriptedModel]:
        model = fakes.ScriptedModel(fakes.content(fakes.decision(intent="pricing", reply=reply)))
        container = make_container(brain="openai", llm_mode="json_schema", llm_role="decide",
                                   llm_http_client=model.client(), knowledge=knowledge)
        context = running_server(container)
        stack.append(context)
        return context.__enter__(), model

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


def _ask(base: str, text: str) -> dict[str, Any]:
    return turn(base, text, "wc_kb")


#: a true fact of the base, but of an entry the message does not retrieve
OFF_TOPIC_PRICE = "Growth is $399/month, and the Impala add-on costs $140/month."


def test_a_large_base_gives_the_model_the_entries_retrieved_for_the_message(
    serve: Any, large: KnowledgeBase,
) -> None:
    base, model = serve(large, OFF_TOPIC_PRICE)
    turn = _ask(base, "How much is Growth per month?")
    [request] = model.requests
    system, prompt = (m["content"] for m in request["messages"])
    # no entry in the system prompt; the retrieved ones with the message
    assert "[plan-growth]" not in system and "[addon-" not in system
    assert "the entries retrieved for each message come with it" in system
    recorded = [k["id"] for k in turn["decision"]["inputs"]["knowledge"]]
    assert len(recorded) == 5 and "pricing-overview" in recorded[:2], recorded
    facts = prompt.split("## Facts for this message", 1)[1].split("## Customer", 1)[0]
    assert [line.split("]")[0].lstrip("- [") for line in facts.splitlines()
            if line.startswith("- [")] == recorded
    assert "addon-impala" not in recorded
    # the model stated a fact it was not given: the grounding rule does not accept it
    [verdict] = [v for v in turn["decision"]["verdicts"] if v["tool"] == "send_message"]
    assert "ungrounded_claim" in verdict["reason_codes"]
    assert "$140" in verdict["detail"]
    assert "$140" not in turn["reply"] and "$399" in turn["reply"]


def test_a_small_base_is_given_whole_and_grounds_all_its_facts(
    serve: Any, embedder: MiniLMEmbedder,
) -> None:
    """The same base under the limit: in the system prompt, every entry a source."""
    whole = KnowledgeBase(embedder, _with_add_ons(), in_prompt=1000)
    base, model = serve(whole, OFF_TOPIC_PRICE)
    turn = _ask(base, "How much is Growth per month?")
    [request] = model.requests
    system, prompt = (m["content"] for m in request["messages"])
    assert "[addon-impala] The Impala add-on costs $140/month" in system
    assert "## Facts for this message" not in prompt
    [verdict] = [v for v in turn["decision"]["verdicts"] if v["tool"] == "send_message"]
    assert "ungrounded_claim" not in verdict["reason_codes"]
    assert turn["reply"] == OFF_TOPIC_PRICE


def test_a_knowledge_file_is_validated_line_by_line(tmp_path: Path) -> None:
    bad = tmp_path / "kb.yaml"
    bad.write_text(
        "company: Example Roasters\n"
        "entries:\n"
        "  - id: shipping\n"
        "    questions: ['do you ship to Canada?']\n"
        "    answer: We ship to the US and Canada.\n"
        "  - id: shipping\n"
        "    questions: []\n"
        "    answer: ''\n",
        encoding="utf-8")
    with pytest.raises(KnowledgeInvalid) as caught:
        load_knowledge(bad)
    problems = [str(p) for p in caught.value.problems]
    assert "line 7: entries.1.questions: List should have at least 1 item after validation, " \
           "not 0" in problems, problems
    assert any(p.startswith("line 8: entries.1.answer:") for p in problems), problems
    # the command a person runs names the same lines, exit code 1
    journey = Path(sys.executable).parent / "journey"
    done = subprocess.run([str(journey), "knowledge", "check", str(bad)], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "200"}, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "invalid knowledge base" in done.stderr and "line 7:" in done.stderr
    # once those are fixed, the repeated id is named
    bad.write_text(bad.read_text().replace("questions: []", "questions: [shipping]")
                   .replace("answer: ''", "answer: Free over $40."))
    with pytest.raises(KnowledgeInvalid, match="the id 'shipping' is used twice"):
        load_knowledge(bad)


def test_the_server_answers_from_the_company_s_own_file(
    tmp_path: Path, make_container: ContainerFactory,
) -> None:
    """``JOURNEY_KNOWLEDGE_PATH``: the rules brain answers from the company's file."""
    own = tmp_path / "kb.yaml"
    data = load_knowledge()
    [growth] = [e for e in data["entries"] if e["id"] == "plan-growth"]
    growth["answer"] = "Growth costs $420/month in our own file, up to 30 seats."
    own.write_text(yaml.safe_dump(data), encoding="utf-8")
    container = make_container(knowledge_path=own)
    with running_server(container) as base:
        turn = _ask(base, "What does the Growth plan include?")
    assert "$420/month in our own file" in turn["reply"]


@pytest.mark.parametrize(("text", "entry"), [
    # seen through `make run`: answered with the yearly-billing entry, no monthly price
    ("What does Growth cost per month?", "pricing-overview"),
    ("how much is Growth per year?", "billing-cycle"),
])
def test_the_shipped_base_answers_a_price_question_with_the_price(
    knowledge: KnowledgeBase, text: str, entry: str,
) -> None:
    found = knowledge.lookup(text)
    assert found is not None and found[0].id == entry, found
