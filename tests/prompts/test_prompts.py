"""Prompts are files with declared placeholders; the rendered decision prompt is pinned."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.brains.base import BrainInput
from agent.brains.llm import LLMBrain, make_client
from agent.brains.rules import RulesBrain
from agent.knowledge import KnowledgeBase
from agent.understand import IntentClassifier, understand
from core.domain import CustomerProfile, Event, Identity
from policy.brief import policy_brief
from policy.lifecycle import load_lifecycle
from policy.loader import load_policy
from prompts import PromptError, load_yaml, render

SNAPSHOT = Path(__file__).parent / "snapshots" / "decision_prompt.txt"
NOW = datetime(2026, 11, 3, 15, 0, tzinfo=UTC)


def test_render_fails_loudly_on_missing_or_extra_values() -> None:
    assert render("Hi {name}", name="Dana") == "Hi Dana"
    with pytest.raises(PromptError, match="missing \\['name'\\]"):
        render("Hi {name}")
    with pytest.raises(PromptError, match="unexpected \\['age'\\]"):
        render("Hi {name}", name="Dana", age=3)


def test_every_reply_template_renders(knowledge: KnowledgeBase) -> None:
    names = ("hello", "company", "answer", "requirements")
    for key, template in load_yaml("replies.yaml").items():
        values = {k: "x" for k in names if "{" + k + "}" in template}
        assert render(template, **values), key


def test_decision_prompt_snapshot(
    classifier: IntentClassifier, knowledge: KnowledgeBase
) -> None:
    policy = load_policy()
    intents = {k: v["description"] for k, v in load_yaml("intents.yaml")["intents"].items()}
    brain = LLMBrain(
        client=make_client("http://127.0.0.1:9/v1", "", 1.0), model="m", mode="json_schema",
        fallback=RulesBrain(knowledge), knowledge=knowledge, intents=intents,
    )
    profile = CustomerProfile(
        id="cus_1", name="Dana Whitfield", lifecycle_stage="awareness",
        identities=[Identity(kind="email", value="dana@northwind.example")],
        attributes={"company": "Northwind"}, consent={"email": "granted"},
        created_at=NOW, updated_at=NOW,
    )
    data = BrainInput(
        profile=profile, channel="email", text="We're 500 seats and need SSO and a quote",
        signals=understand("We're 500 seats and need SSO and a quote", classifier),
        lifecycle=load_lifecycle(), rule_stage="decision", rule_name="buying-signal",
        events=[Event(id="e", customer_id="cus_1", type="page_view",
                      properties={"page": "pricing"}, occurred_at=NOW)],
        writable_fields=tuple(policy.crm.writable_fields),
        policy_brief=policy_brief(policy),
    )
    rendered = brain.system_prompt(data) + "\n\n=== turn ===\n\n" + brain.turn_prompt(data)
    if os.environ.get("UPDATE_SNAPSHOTS") or not SNAPSHOT.exists():
        SNAPSHOT.write_text(rendered, encoding="utf-8")
    assert rendered == SNAPSHOT.read_text(encoding="utf-8")
    assert "{" not in brain.turn_prompt(data).replace('{"page": "pricing"}', "")
