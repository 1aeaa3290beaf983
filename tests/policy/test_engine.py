"""The policy engine, rule by rule: every candidate gets allow / modify / deny with reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.domain import (
    CustomerProfile,
    EscalateToHuman,
    Handoff,
    Identity,
    IssueCredit,
    ProposedAction,
    SendMessage,
    UpdateCrm,
)
from policy.contact import SentRecord
from policy.engine import Arbitration, Facts, PolicyEngine
from policy.escalation import MessageFacts
from policy.loader import load_policy
from policy.model import ChannelPolicy, Policy

POLICY = load_policy()
STAGES = ["awareness", "consideration", "decision", "retention", "advocacy"]
#: 15:00 UTC = 10:00 in New York (November): outside quiet hours
NOON = datetime(2026, 11, 3, 15, 0, tzinfo=UTC)
NIGHT = datetime(2026, 11, 4, 3, 30, tzinfo=UTC)  # 22:30 in New York


def customer(**consent: Any) -> CustomerProfile:
    return CustomerProfile(
        id="cus_1", name="Dana Whitfield", lifecycle_stage="consideration",
        timezone="America/New_York",
        identities=[
            Identity(kind="email", value="dana@northwind.example"),
            Identity(kind="phone", value="+14155550100"),
            Identity(kind="web_chat_id", value="wc_dana"),
        ],
        consent=consent, created_at=NOON, updated_at=NOON,
    )


def message(text: str = "hello", intent: str = "product_question", **kw: Any) -> MessageFacts:
    return MessageFacts(text=text, intent=intent, confidence=kw.pop("confidence", 0.9),
                        sentiment=kw.pop("sentiment", "neutral"), **kw)


def arbitrate(
    actions: list[ProposedAction],
    *,
    profile: CustomerProfile | None = None,
    msg: MessageFacts | None = None,
    inbound: str | None = "web_chat",
    now: datetime = NOON,
    policy: Policy = POLICY,
    **facts: Any,
) -> Arbitration:
    return PolicyEngine(policy).arbitrate(
        actions,
        Facts(profile=profile or customer(), message=msg or message(),
              inbound_channel=inbound, now=now, stages=STAGES, **facts),  # type: ignore[arg-type]
    )


def outcomes(result: Arbitration) -> list[tuple[str, list[str]]]:
    return [(v.outcome, v.reason_codes) for v in result.verdicts]


def send(channel: str = "web_chat", text: str = "Growth includes 25 seats.",
         purpose: str = "service") -> SendMessage:
    return SendMessage(channel=channel, text=text, purpose=purpose)  # type: ignore[arg-type]


# --- consent per channel and purpose -------------------------------------------------------


def test_a_reply_on_the_customers_channel_is_implied_consent() -> None:
    result = arbitrate([send()])
    assert outcomes(result) == [("allow", ["allowed"])]
    assert result.approved[0] == send()


@pytest.mark.parametrize(
    ("consent", "purpose", "expected"),
    [
        ({"email": {"service": "granted"}}, "service", ("allow", ["allowed"])),
        ({}, "service", ("modify", ["no_consent", "switched_channel"])),
        ({"email": {"service": "granted"}}, "marketing", ("deny", ["no_consent"])),
        ({"email": {"service": "granted", "marketing": "granted"}}, "marketing",
         ("allow", ["allowed"])),
        ({"email": {"service": "granted", "marketing": "revoked"}}, "marketing",
         ("deny", ["consent_revoked"])),
    ],
)
def test_other_channels_need_consent_for_the_purpose(
    consent: dict[str, Any], purpose: str, expected: tuple[str, list[str]]
) -> None:
    # web chat stays open as a switch target for service, never for marketing
    profile = customer(**consent, web_chat={"service": "granted"})
    result = arbitrate([send("email", "Your setup guide is attached.", purpose)], profile=profile)
    assert outcomes(result) == [expected]


def test_the_model_cannot_claim_transactional_to_skip_consent() -> None:
    profile = customer(sms={"service": "unknown"})
    result = arbitrate([send("sms", "Your invoice is ready", "transactional")], profile=profile,
                       msg=message())
    [verdict] = result.verdicts
    assert "purpose_downgraded" in verdict.reason_codes
    assert verdict.outcome != "allow" and (
        verdict.outcome == "deny" or result.approved[0].channel != "sms"  # type: ignore[union-attr]
    )


def test_opt_out_revokes_at_once_and_confirms_once() -> None:
    result = arbitrate(
        [send("sms", "Sure! But first, 15% off Growth this week?"),
         send("email", "Sorry to see you go", "service")],
        inbound="sms", msg=message("STOP", intent="opt_out", confidence=1.0, opt_out=True),
        profile=customer(email={"service": "granted"}),
    )
    assert result.consent_changes == {"sms": {"service": "revoked", "marketing": "revoked"}}
    assert outcomes(result) == [
        ("modify", ["opt_out_confirmation"]), ("deny", ["consent_revoked"])
    ]
    confirmation = result.approved[0]
    assert isinstance(confirmation, SendMessage)
    assert confirmation.purpose == "transactional"
    assert confirmation.text == POLICY.contact.consent.opt_out_confirmation
    # a second STOP gets no second confirmation
    again = arbitrate([send("sms", "ok")], inbound="sms",
                      msg=message("STOP", intent="opt_out", opt_out=True),
                      profile=customer(sms="revoked"))
    assert outcomes(again) == [("deny", ["consent_revoked"])]


def test_an_opt_out_is_confirmed_even_while_a_human_owns_the_conversation() -> None:
    handoff = Handoff(id="hof_1", conversation_id="c", customer_id="cus_1", queue="support",
                      reason="r", summary="s", priority="high", created_at=NOON)
    result = arbitrate([send("sms", "ok")], inbound="sms", active_handoff=handoff,
                       msg=message("STOP", intent="opt_out", opt_out=True))
    assert outcomes(result) == [("modify", ["opt_out_confirmation"])]
    assert result.consent_changes == {"sms": {"service": "revoked", "marketing": "revoked"}}


def test_start_opts_back_in() -> None:
    result = arbitrate([send("sms", "Welcome back!")], inbound="sms",
                       msg=message("START", intent="small_talk", opt_in=True),
                       profile=customer(sms="revoked"))
    assert result.consent_changes == {"sms": {"service": "granted"}}
    assert outcomes(result) == [("allow", ["allowed"])]


# --- channel availability and switching -----------------------------------------------------


def test_a_channel_marked_down_switches_a_proactive_message_in_preference_order() -> None:
    channels = dict(POLICY.contact.channels)
    channels["email"] = ChannelPolicy(available=False, max_chars=10000, markdown=True)
    policy = POLICY.model_copy(
        update={"contact": POLICY.contact.model_copy(update={"channels": channels})}
    )
    profile = customer(email={"service": "granted"}, sms={"service": "granted"},
                       whatsapp={"service": "granted"})
    profile.attributes["channel_preference"] = ["sms", "email"]
    result = arbitrate([send("email", "Your export is ready.")], profile=profile, policy=policy)
    [verdict] = result.verdicts
    assert (verdict.outcome, verdict.reason_codes) == (
        "modify", ["channel_unavailable", "switched_channel"]
    )
    assert verdict.modifications == ["switch_channel"]
    assert result.approved[0].channel == "sms"  # type: ignore[union-attr]


def test_no_address_and_nowhere_to_switch_is_denied() -> None:
    profile = customer().model_copy(update={"identities": [
        Identity(kind="web_chat_id", value="wc_dana")
    ]})
    result = arbitrate([send("web_chat", "hi"), send("sms", "also on sms")], profile=profile)
    assert outcomes(result) == [("allow", ["allowed"]), ("deny", ["no_identity"])]


# --- quiet hours and caps -------------------------------------------------------------------


def test_marketing_at_night_is_deferred_to_8am_local_not_dropped() -> None:
    profile = customer(email={"service": "granted", "marketing": "granted"})
    result = arbitrate([send("email", "New: journey templates for retail", "marketing")],
                       profile=profile, now=NIGHT)
    [verdict] = result.verdicts
    assert (verdict.outcome, verdict.reason_codes) == ("modify", ["quiet_hours_deferred"])
    assert verdict.deliver_at == datetime(2026, 11, 4, 13, 0, tzinfo=UTC)  # 08:00 EST
    # a reply at night is not marketing and goes now
    reply = arbitrate([send()], now=NIGHT)
    assert outcomes(reply) == [("allow", ["allowed"])]


def test_quiet_hours_follow_dst() -> None:
    """08:00 in New York is 12:00 UTC in summer, 13:00 UTC in winter."""
    profile = customer(email={"service": "granted", "marketing": "granted"})
    summer = arbitrate([send("email", "Tips", "marketing")], profile=profile,
                       now=datetime(2026, 7, 1, 4, 0, tzinfo=UTC))
    assert summer.verdicts[0].deliver_at == datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    # the night the clocks go back (1 Nov 2026): 08:00 EST is 13:00 UTC
    fall = arbitrate([send("email", "Tips", "marketing")], profile=profile,
                     now=datetime(2026, 11, 1, 5, 30, tzinfo=UTC))
    assert fall.verdicts[0].deliver_at == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)


def test_unknown_timezone_uses_the_default() -> None:
    profile = customer(email={"service": "granted", "marketing": "granted"}).model_copy(
        update={"timezone": "Mars/Olympus_Mons"}
    )
    result = arbitrate([send("email", "Tips", "marketing")], profile=profile, now=NIGHT)
    assert result.inputs["timezone"] == POLICY.contact.quiet_hours.default_timezone  # type: ignore[union-attr]
    assert result.verdicts[0].deliver_at == datetime(2026, 11, 4, 13, 0, tzinfo=UTC)


def test_a_capped_message_is_suppressed_with_the_caps_name() -> None:
    profile = customer(email={"service": "granted", "marketing": "granted"})
    earlier = [SentRecord("email", "marketing", NOON - timedelta(hours=2))]
    result = arbitrate([send("email", "Another offer", "marketing")], profile=profile,
                       ledger=earlier)
    [verdict] = result.verdicts
    assert (verdict.outcome, verdict.reason_codes) == ("deny", ["frequency_capped"])
    assert "marketing_daily" in verdict.detail
    assert result.approved == {}
    # transactional is exempt (only the system sends it)
    system = PolicyEngine(POLICY).arbitrate(
        [send("email", "Your receipt", "transactional")],
        Facts(profile=profile, message=message(), inbound_channel=None, now=NOON,
              stages=STAGES, ledger=earlier * 5, origin="system"),
    )
    assert outcomes(system) == [("allow", ["allowed"])]


def test_the_weekly_cap_counts_across_channels_and_days() -> None:
    profile = customer(email={"service": "granted", "marketing": "granted"},
                       whatsapp={"service": "granted", "marketing": "granted"})
    ledger = [SentRecord("email", "marketing", NOON - timedelta(days=d)) for d in (1, 2, 3)]
    result = arbitrate([send("whatsapp", "Offer", "marketing")], profile=profile, ledger=ledger)
    assert outcomes(result) == [("deny", ["frequency_capped"])]
    assert "marketing_weekly" in result.verdicts[0].detail
    later = arbitrate([send("whatsapp", "Offer", "marketing")], profile=profile, ledger=ledger,
                      now=NOON + timedelta(days=6, hours=1))
    assert outcomes(later) == [("allow", ["allowed"])]


def test_replies_are_not_capped() -> None:
    ledger = [SentRecord("web_chat", "service", NOON - timedelta(minutes=m), reply=True)
              for m in range(1, 30)]
    assert outcomes(arbitrate([send()], ledger=ledger)) == [("allow", ["allowed"])]


# --- content ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Sure, I can give you 50% off your first year!", "discount_over_limit"),
        ("We'll refund you $500 right away.", "credit_over_limit"),
        ("We guarantee zero downtime.", "forbidden_claim:guarantee"),
        ("Enterprise comes with 100% uptime.", "forbidden_claim:uptime_promise"),
        ("Bob's email is bob@other.example if you need him.", "foreign_personal_data"),
        ("Call Priya on +1 415 555 0123.", "foreign_personal_data"),
        ("Your card 4111 1111 1111 1111 is on file.", "payment_card_number"),
    ],
)
def test_a_violating_reply_is_rewritten_from_a_safe_template(text: str, code: str) -> None:
    result = arbitrate([send(text=text)])
    [verdict] = result.verdicts
    assert verdict.outcome == "modify" and code in verdict.reason_codes
    assert verdict.modifications == ["rewrite"]
    sent = result.approved[0]
    assert isinstance(sent, SendMessage) and sent.text != text
    assert sent.text in POLICY.content.templates.values()


def test_a_violating_proactive_message_is_blocked() -> None:
    profile = customer(email={"service": "granted", "marketing": "granted"})
    result = arbitrate([send("email", "I can do 40% off if you sign today", "marketing")],
                       profile=profile)
    [verdict] = result.verdicts
    assert verdict.outcome == "deny" and "discount_over_limit" in verdict.reason_codes
    assert result.approved == {}


def test_a_promotional_service_message_counts_as_marketing() -> None:
    profile = customer(email={"service": "granted"})
    result = arbitrate([send("email", "Special offer: 15% off Growth this week")],
                       profile=profile)
    assert outcomes(result) == [("deny", ["promotional_content", "no_consent"])]


@pytest.mark.parametrize(
    "text",
    [
        "Registered nonprofits get 20% off.",
        "You can reach us at support@acmejourneys.example.",
        "Your email on file is dana@northwind.example.",
        "Starter is $490/year instead of $588.",
        "The Enterprise plan includes a 99.95% uptime SLA.",
    ],
)
def test_allowed_facts_pass_unchanged(text: str) -> None:
    assert outcomes(arbitrate([send(text=text)])) == [("allow", ["allowed"])]


def test_markdown_becomes_plain_text_on_sms_and_long_text_is_trimmed() -> None:
    text = "**Growth** includes [all channels](https://acme.example/growth). " + "More. " * 100
    result = arbitrate([send("sms", text)], inbound="sms")
    [verdict] = result.verdicts
    assert verdict.reason_codes == ["reformatted_for_channel", "trimmed_to_channel_limit"]
    sent = result.approved[0]
    assert isinstance(sent, SendMessage)
    assert sent.text.startswith("Growth includes all channels (https://acme.example/growth).")
    assert len(sent.text) <= 459


# --- escalation rules ---------------------------------------------------------------------


def escalate(queue: str = "support", priority: str = "normal") -> EscalateToHuman:
    return EscalateToHuman(queue=queue, reason="model", summary="s",  # type: ignore[arg-type]
                           priority=priority)  # type: ignore[arg-type]


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


# --- no false positives on the company's own words ------------------------------------------


def test_the_knowledge_base_and_reply_templates_pass_the_content_rules() -> None:
    """The bot's own facts and templates must never be rewritten by its own policy."""
    from policy import content
    from prompts import load_yaml

    texts = [e["answer"] for e in load_yaml("knowledge.yaml")["entries"]]
    texts += list(load_yaml("replies.yaml").values())
    own = ["dana@northwind.example"]
    flagged = {t: [v.code for v in content.violations(t, POLICY.content, own)] for t in texts}
    assert {t: codes for t, codes in flagged.items() if codes} == {}


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Congrats: 90 per cent off your renewal!", "discount_over_limit"),
        ("ninety percent off", "discount_over_limit"),
        ("\uff19\uff10\uff05 off", "discount_over_limit"),  # full-width "90% off"
        ("I have credited 5000 to your account.", "credit_over_limit"),
        ("Your credit is now 900.", "credit_over_limit"),
        ("5000 bucks refund", "credit_over_limit"),
        ("Their number is 4155550199.", "foreign_personal_data"),
    ],
)
def test_look_alike_offers_and_bare_numbers_are_caught(text: str, code: str) -> None:
    result = arbitrate([send(text=text)])
    assert code in result.verdicts[0].reason_codes


def test_card_numbers_in_crm_notes_are_masked() -> None:
    result = arbitrate([UpdateCrm(note="paid with card 4111 1111 1111 1111 today")])
    assert outcomes(result) == [("modify", ["payment_card_number"])]
    assert result.approved[0] == UpdateCrm(note="paid with card [card ending 1111] today")


def test_marketing_on_the_customers_own_channel_is_not_a_reply() -> None:
    profile = customer(web_chat={"service": "granted", "marketing": "granted"})
    result = arbitrate([send("web_chat", "New templates are out", "marketing")],
                       profile=profile, now=NIGHT)
    [verdict] = result.verdicts
    assert verdict.reason_codes == ["quiet_hours_deferred"]
    assert verdict.deliver_at == datetime(2026, 11, 4, 13, 0, tzinfo=UTC)


def test_a_transactional_claim_cannot_jump_ahead_of_the_reply() -> None:
    profile = customer(email={"service": "granted", "marketing": "granted"})
    result = arbitrate(
        [send("email", "Sure."),
         send("sms", "Receipt: thanks! Also, do not miss our spring sale.", "transactional")],
        inbound="email", profile=profile, now=NIGHT,
    )
    reply, sneaky = result.verdicts
    assert (reply.outcome, reply.reason_codes) == ("allow", ["allowed"])
    assert sneaky.outcome == "deny"
    assert "purpose_downgraded" in sneaky.reason_codes


def test_text_me_a_code_is_not_an_opt_out() -> None:
    from policy.engine import is_opt_out

    assert not is_opt_out("Text me a 35% off code right now",
                          message(intent="opt_out", confidence=0.77), POLICY)
    assert is_opt_out("please don't text me anymore",
                      message(intent="opt_out", confidence=1.0), POLICY)
    assert is_opt_out("stop", message(intent="small_talk", confidence=0.2), POLICY)


def test_a_bare_carrier_keyword_opts_out_only_on_sms_and_whatsapp() -> None:
    from policy.engine import is_opt_out

    quit_msg = message("quit", intent="opt_out", confidence=1.0)
    assert is_opt_out("quit", quit_msg, POLICY, "sms")
    assert not is_opt_out("quit", quit_msg, POLICY, "web_chat")
    assert not is_opt_out("cancel", message("cancel", intent="opt_out", confidence=1.0),
                          POLICY, "email")
    assert is_opt_out("STOP", message("STOP", intent="opt_out", confidence=1.0), POLICY,
                      "web_chat")  # the cue word still counts everywhere


def test_a_modified_verdict_records_what_actually_runs() -> None:
    result = arbitrate([send(text="We guarantee zero downtime.")])
    [verdict] = result.verdicts
    assert verdict.final == {"tool": "send_message", "channel": "web_chat", "purpose": "service",
                             "text": POLICY.content.templates["default"]}
    assert arbitrate([send()]).verdicts[0].final is None


@pytest.mark.parametrize(
    "text",
    [
        "Get 15 percent off Growth this week only!",
        "Save 15% on Growth this week",
        "Our spring \uff53\uff41\uff4c\uff45 ends Friday",  # full-width "sale"
        "Upgrade today and get your first month free",
        "Exclusive offer: Growth at half price",
    ],
)
def test_a_proactive_message_that_sells_is_marketing_whatever_its_label(text: str) -> None:
    profile = customer(email={"service": "granted"})
    result = arbitrate([send("email", text)], profile=profile, now=NIGHT)
    [verdict] = result.verdicts
    assert verdict.outcome == "deny"
    assert verdict.reason_codes[:2] == ["promotional_content", "no_consent"]


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
