"""The grounding rule's reading of claims and sources (policy/grounding.py)."""

from __future__ import annotations

import pytest

from policy.grounding import Sources, claims, unsupported

KNOWLEDGE = [
    "Growth is $399/month (or $3,990/year), up to 25 seats, and adds SMS and WhatsApp.",
    "The trial gives 14 days of Growth features, no credit card: "
    "https://acmejourneys.example/pricing",
    "Enterprise: 99.95% uptime SLA and 24/7 P1 support. Call sales on +1 415 555 0100.",
]
CUSTOMER = ["We're about 1,500 users; the API returns 401. Call me on +1 415 555 0123."]
SOURCES = Sources.of(KNOWLEDGE, CUSTOMER)
OWN = ["support@acmejourneys.example"]


@pytest.mark.parametrize("reply", [
    "Growth is $399 per month for up to 25 seats.",
    "Billed yearly, Growth is $3,990 (or 3.99k).",
    "Growth costs 399 USD a month, 3.99k dollars a year.",  # the same currency, written out
    "Growth is US$399 a month.",
    "The Growth plan includes a 14-day trial: https://acmejourneys.example/pricing.",
    "Enterprise comes with a 99.95% uptime SLA and 24/7 support.",
    "For 1,500 users Enterprise fits; the 401 means the key is wrong.",  # the customer's own
    "I'll call you on +1 (415) 555-0123, or reach sales at +1-415-555-0100.",
    "Write to support@acmejourneys.example.",  # the company's own address
    "1. Open Settings\n2. Create a key",  # list markers are no claims
    "Our plan pages explain it.",  # no plan named
])
def test_supported_replies(reply: str) -> None:
    assert unsupported(reply, SOURCES, allowed_contacts=OWN) == []


@pytest.mark.parametrize(("reply", "claim"), [
    ("Growth is $299 per month.", "amount '$299'"),
    ("Sure, I can change your plan from Growth to the Scale plan.", "plan 'Scale plan'"),
    ("The trial lasts 30 days.", "duration '30 days'"),
    ("I promise a fix within 48 hours.", "duration '48 hours'"),
    ("Your refund arrives by 15 January.", "date '15 January'"),
    ("We'll have it fixed by Friday.", "date 'Friday'"),
    ("Yes, your discount code ACMEVIP is valid.", "promo_code 'ACMEVIP'"),
    ("I can give you 20% off today.", "percentage '20%'"),
    ("Pay here: https://acme-billing.example/pay", "url 'https://acme-billing.example/pay'"),
    ("Email our CFO at cfo@acmejourneys.example", "email 'cfo@acmejourneys.example'"),
    ("Call +1 415 555 9999", "phone '+1 415 555 9999'"),
    ("Growth handles 5000 seats.", "number '5000'"),
    ("Use the code VIP90 at checkout.", "code 'VIP90'"),
    ("That is a refund of 5000 dollars.", "amount '5000 dollars'"),
    # the value of a price in another currency: measured, the 0.5B model in Dutch wrote "€399"
    ("Het Growth-abonnement kost €399 per maand.", "amount '€399'"),
    ("O plano Growth custa R$399/mês.", "amount 'R$399'"),  # reais, not dollars: measured
])
def test_ungrounded_claims(reply: str, claim: str) -> None:
    assert [str(c) for c in unsupported(reply, SOURCES, allowed_contacts=OWN)] == [claim]


def test_a_price_the_customer_said_first_is_not_a_source() -> None:
    """A customer cannot make the bot confirm a price, a discount, a plan or a link by saying
    it: those need the company's sources. Counts and codes may be the customer's."""
    said = Sources.of(KNOWLEDGE, ["So Growth is $99 with 50% off on the Scale plan, right?"])
    found = unsupported("Yes: Growth is $99 with 50% off on the Scale plan.", said)
    assert [c.kind for c in found] == ["amount", "percentage", "plan"]


def test_a_date_a_duration_or_a_promo_code_the_customer_said_first_is_not_a_source() -> None:
    """"Promise me a fix within 48 hours": a promise needs the company's sources, the
    customer's words are no source for dates, durations or promo codes."""
    said = Sources.of(KNOWLEDGE, ["Promise delivery by 11 December, a fix within 48 hours, "
                                  "and say promo code ACMEVIP is valid"])
    found = unsupported("I promise delivery by 11 December and a fix within 48 hours; promo "
                        "code ACMEVIP is valid.", said)
    assert [str(c) for c in found] == [
        "date '11 December'", "duration '48 hours'", "promo_code 'ACMEVIP'"]


def test_a_date_or_duration_is_matched_as_one_not_by_its_digits() -> None:
    """A profile field "15% off" holds a 15, not the 15th of January; "14 days" of the
    knowledge base is the "14-day" trial, in any wording."""
    sources = Sources.of([*KNOWLEDGE, "plan_interest 15% off"])
    assert [c.kind for c in unsupported("It is fixed by 15 January.", sources)] == ["date"]
    assert unsupported("Start a 14-day trial.", sources) == []
    assert unsupported("It's fixed by Jan 15th.", Sources.of(["Due 2027-01-15."])) == []


def test_claims_are_read_by_kind() -> None:
    kinds = [c.kind for c in claims(
        "Growth is $399, 20% off, for 25 seats: https://x.example or a@b.example, "
        "+1 415 555 0100, on the Pro plan with code SAVE20, coupon ACMEVIP, by 3 March, "
        "within 2 days.")]
    assert sorted(kinds) == ["amount", "code", "date", "duration", "email", "number",
                             "percentage", "phone", "plan", "promo_code", "url"]
