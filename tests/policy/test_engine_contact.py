"""The policy engine, rule by rule: consent per channel and purpose, opt-out and opt-in,
channel availability and switching, quiet hours and frequency caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.domain import Handoff, Identity, SendMessage
from policy.contact import SentRecord
from policy.engine import Facts, PolicyEngine
from policy.model import ChannelPolicy
from tests.policy.engine_helpers import (
    NIGHT,
    NOON,
    POLICY,
    STAGES,
    arbitrate,
    customer,
    message,
    outcomes,
    send,
)

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


# --- a reply or not, and the opt-out words ---------------------------------------------------


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
