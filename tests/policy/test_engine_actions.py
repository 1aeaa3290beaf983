"""The policy engine, rule by rule: escalation rules and queues, one action of each kind per
turn, CRM writes, credits and approval, and the audit inputs."""

from __future__ import annotations

import pytest

from core.domain import EscalateToHuman, Handoff, IssueCredit, SendMessage, UpdateCrm
from policy.escalation import MessageFacts
from tests.policy.engine_helpers import (
    NIGHT,
    NOON,
    POLICY,
    arbitrate,
    escalate,
    message,
    outcomes,
    send,
)

# --- escalation rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "rule", "queue", "priority"),
    [
        (message("I'm talking to my lawyer about this"), "legal_terms", "support", "urgent"),
        (message("get me a person", intent="human_request", topic="pricing"),
         "explicit_human_request", "sales", "normal"),
        (message("get me a person", intent="human_request", topic="billing"),
         "explicit_human_request", "support", "normal"),
        (message("this is broken again", intent="support_problem", sentiment="negative",
                 repeat_contacts=2), "negative_repeat_contact", "support", "high"),
        (message("we need 500 seats", intent="buying_signal", seats=500),
         "high_value_seats", "sales", "high"),
        (message("need SSO", intent="pricing", requirements=("SSO",)),
         "enterprise_requirements", "sales", "high"),
        (message("hmm", intent="off_topic", confidence=0.2, stalled_turns=2),
         "no_progress", "support", "normal"),
        (message("ugh this thing, awful", intent="off_topic", confidence=0.15,
                 sentiment="negative"), "low_confidence_frustration", "support", "normal"),
    ],
)
def test_escalation_rules_add_the_escalation_the_model_forgot(
    msg: MessageFacts, rule: str, queue: str, priority: str
) -> None:
    result = arbitrate([send(text="Let me look into that.")], msg=msg)
    assert result.escalation is not None and result.escalation.rule == rule
    [reply, added] = result.verdicts
    assert added.added_by_policy and added.reason_codes == [f"escalation_rule:{rule}"]
    handoff = result.approved[1]
    assert isinstance(handoff, EscalateToHuman)
    assert (handoff.queue, handoff.priority) == (queue, priority)
    # the model's reply did not say people take over: the customer gets the acknowledgement
    assert reply.outcome == "modify" and reply.modifications == ["rewrite"]
    assert reply.reason_codes == ["handoff_acknowledgement", "acknowledges_escalation"]
    sent = result.approved[0]
    assert isinstance(sent, SendMessage)
    assert sent.text.startswith(f"I'm connecting you with our {queue} team now.")


def test_a_reply_that_already_hands_over_is_kept() -> None:
    msg = message("get me a person", intent="human_request", topic="billing")
    result = arbitrate([send(text="Of course, a colleague from billing will pick this up.")],
                       msg=msg)
    [reply, _] = result.verdicts
    assert (reply.outcome, reply.reason_codes) == ("allow", ["handoff_acknowledgement"])


def test_an_unsure_intent_does_not_fire_an_intent_rule() -> None:
    unsure = message("why is it doing that again", intent="human_request", confidence=0.26)
    result = arbitrate([send()], msg=unsure)
    assert result.escalation is None
    assert outcomes(result) == [("allow", ["allowed"])]


def test_the_rule_reroutes_the_models_escalation() -> None:
    result = arbitrate([escalate("sales", "low")], msg=message("I will sue you"))
    [verdict, ack] = result.verdicts
    assert verdict.reason_codes == ["escalation_rule:legal_terms", "rerouted_by_rule"]
    assert (result.approved[0].queue, result.approved[0].priority) == (  # type: ignore[union-attr]
        "support", "urgent"
    )
    assert ack.added_by_policy  # the customer is told


def test_no_escalation_while_a_handoff_is_open_and_the_bot_stays_silent() -> None:
    handoff = Handoff(id="hof_1", conversation_id="c", customer_id="cus_1", queue="support",
                      reason="r", summary="s", priority="high", created_at=NOON)
    result = arbitrate([send(), escalate()], msg=message("I will sue"), active_handoff=handoff)
    assert outcomes(result) == [("deny", ["handoff_active"]), ("deny", ["already_escalated"])]


def test_one_escalation_one_crm_update_one_message_per_channel() -> None:
    result = arbitrate([send(), send(text="again"), escalate(), escalate(),
                        UpdateCrm(note="a"), UpdateCrm(note="b")])
    assert [v.outcome for v in result.verdicts] == ["allow", "deny"] * 3
    assert {c for v in result.verdicts[1::2] for c in v.reason_codes} == {"duplicate_action"}


# --- CRM, credits, approval -------------------------------------------------------------


def test_crm_writes_are_limited_to_known_stages_and_writable_fields() -> None:
    assert outcomes(arbitrate([UpdateCrm(stage="banana")])) == [("deny", ["unknown_stage"])]
    assert outcomes(arbitrate([UpdateCrm(fields={"plan": "Enterprise"})])) == [
        ("deny", ["protected_field"])
    ]
    mixed = arbitrate([UpdateCrm(fields={"seats": 40, "lead_score": 99})])
    assert outcomes(mixed) == [("modify", ["field_not_writable"])]
    assert mixed.approved[0] == UpdateCrm(fields={"seats": 40})
    back = arbitrate([UpdateCrm(stage="awareness", note="n")])
    assert outcomes(back) == [("modify", ["stage_regression"])]
    assert back.approved[0] == UpdateCrm(note="n")


def test_credits_wait_for_approval_and_large_ones_are_denied() -> None:
    result = arbitrate([IssueCredit(amount=20, reason="outage"),
                        IssueCredit(amount=10, reason="again")])
    assert outcomes(result) == [("allow", ["approval_required"]), ("deny", ["duplicate_action"])]
    assert result.held == {0: IssueCredit(amount=20, reason="outage")}
    assert result.approved == {}
    big = arbitrate([IssueCredit(amount=5000, reason="asked nicely")])
    assert outcomes(big) == [("deny", ["credit_over_limit"])]


def test_the_audit_inputs_name_what_the_engine_saw() -> None:
    result = arbitrate([send()], msg=message("I want a human", intent="human_request",
                                              topic="billing"), now=NIGHT)
    inputs = result.inputs
    assert inputs["local_time"] == "2026-11-03 22:30 EST"
    assert inputs["escalation_rule"]["name"] == "explicit_human_request"
    assert inputs["signals"]["intent"] == "human_request"
    assert inputs["policy_version"] == POLICY.version


@pytest.mark.parametrize(
    ("text", "topic", "queue"),
    [
        ("can I speak to someone from sales about pricing?", "billing", "sales"),
        ("I want to file a complaint about your sales rep", "pricing", "support"),
        ("get me a person", "demo_request", "sales"),
        ("get me a person", "support_problem", "support"),
    ],
)
def test_auto_queue_reads_the_words_then_the_topic(text: str, topic: str, queue: str) -> None:
    result = arbitrate([send()], msg=message(text, intent="human_request", topic=topic))
    assert result.escalation is not None and result.escalation.queue == queue
