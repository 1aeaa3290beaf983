"""The policy engine, rule by rule: the content rules on what the bot says (offers, claims,
other people's data, promotional text), the channel's format and length, and no false
positives on the company's own words."""

from __future__ import annotations

import pytest

from core.domain import SendMessage, UpdateCrm
from tests.policy.engine_helpers import (
    NIGHT,
    POLICY,
    arbitrate,
    customer,
    outcomes,
    send,
)

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
