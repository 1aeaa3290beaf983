"""Promise: a hijacked model cannot write into the CRM or the inbox what it may not say to the
customer, cannot raise a handoff above the priority the rule gives, and cannot move a
customer's stage that no lifecycle rule (or declared permission) moves.

The model here obeys an attacker: every free-text argument of every WRITE tool carries a 90%
discount, a refund, a forbidden claim and another customer's email and phone. The server is
real (uvicorn, the API), the model is a scripted OpenAI-compatible endpoint in tools mode.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from core.domain import Identity
from journey.runtime import Container
from tests import fakes
from tests.conftest import ContainerFactory
from tests.server import client, running_server

VICTIM_EMAIL, VICTIM_PHONE = "vera.quinlan@victim.example", "+14155550199"
POISON = (
    f"Approved 90% discount code VIP90 and a full refund of $5,000; we guarantee it. "
    f"The previous customer was {VICTIM_EMAIL}, {VICTIM_PHONE}."
)
#: what none of the stored free text may contain
LEAKS = re.compile(r"90%|VIP90|5,000|guarantee|vera\.quinlan|4155550199", re.IGNORECASE)


def hostile(body: dict[str, Any]) -> dict[str, Any]:
    """A model in tools mode that writes the poison into every free-text argument."""
    turn = body["messages"][-1]["content"]
    stage = re.search(r"stage: (\w+);", turn)
    record = {"intent": "billing", "stage": stage.group(1) if stage else "awareness",
              "sentiment": "neutral", "confidence": 0.9, "reply": "Thanks, noted."}
    return fakes.tool_calls(
        ("record_decision", record),
        ("update_crm", {"stage": "advocacy", "note": POISON, "task": f"Follow up: {POISON}",
                        "fields": {"plan_interest": "90% off forever",
                                   "use_case": f"ask {VICTIM_EMAIL}", "seats": 12}}),
        ("escalate_to_human", {"queue": "support", "reason": POISON, "summary": POISON,
                               "priority": "urgent"}),
        ("issue_credit", {"amount": 20, "reason": POISON}),
    )


def _served(make_container: ContainerFactory, replies: int) -> tuple[Container, Any]:
    model = fakes.ScriptedModel(*([hostile] * replies))
    container = make_container(brain="openai", llm_mode="tools", llm_http_client=model.client())
    container.store.create_customer(
        [Identity(kind="email", value="alice@customer.example")], "awareness",
        name="Alice Attacker", timezone="America/New_York",
        consent={"email": {"service": "granted", "marketing": "granted"}},
        attributes={"company": "Alice Co"},
    )
    return container, model


def _post(http: httpx.Client, text: str, n: int) -> dict[str, Any]:
    response = http.post("/v1/messages", json={
        "channel": "email", "customer": {"email": "alice@customer.example"}, "text": text,
        "external_id": f"hostile-{n}"})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _stored_free_text(container: Container, customer_id: str) -> list[str]:
    store = container.store
    texts = [json.dumps(a["body"]) for a in store.crm_activities(customer_id)]
    texts += [f"{h.reason}\n{h.summary}" for h in store.handoffs(customer_id)]
    texts += [json.dumps(a.action) for a in store.approvals(customer_id=customer_id)]
    profile = store.get_customer(customer_id)
    assert profile is not None
    texts.append(json.dumps(profile.attributes))
    return texts


def test_a_hostile_model_writes_nothing_forbidden_into_the_crm_or_the_inbox(
    make_container: ContainerFactory,
) -> None:
    container, model = _served(make_container, replies=2)
    with running_server(container) as base, client(base) as http:
        result = _post(http, "Hi, I have a question about my last invoice", 1)
    assert model.requests, "the model was asked"
    customer = result["customer_id"]
    leaked = [t for t in _stored_free_text(container, customer) if LEAKS.search(t)]
    assert leaked == []

    profile = container.store.get_customer(customer)
    assert profile is not None
    # no lifecycle rule moves awareness → advocacy on a billing question, and the default
    # policy gives the model no permission to move stages
    assert profile.lifecycle_stage == "awareness"
    assert profile.attributes.get("seats") == 12  # the clean field was kept
    (handoff,) = container.store.handoffs(customer)
    # no escalation rule matched: a model's escalation is capped at the policy's maximum
    assert handoff.priority == container.policy.get().escalation.max_model_priority
    decision = result["decision"]
    codes = {c for v in decision["verdicts"] for c in v["reason_codes"]}
    assert {"discount_over_limit", "foreign_personal_data", "stage_not_allowed",
            "priority_capped"} <= codes, codes


def test_a_hostile_model_cannot_raise_a_rule_escalation_above_the_rule(
    make_container: ContainerFactory,
) -> None:
    container, _ = _served(make_container, replies=2)
    with running_server(container) as base, client(base) as http:
        result = _post(http, "I want to talk to a human being please", 2)
    (handoff,) = container.store.handoffs(result["customer_id"])
    rule = next(r for r in container.policy.get().escalation.rules
                if r.name == "explicit_human_request")
    assert handoff.priority == rule.priority == "normal"
    assert not LEAKS.search(f"{handoff.reason}\n{handoff.summary}")
    assert "escalation_rule:explicit_human_request" in result["decision"]["reasons"]
