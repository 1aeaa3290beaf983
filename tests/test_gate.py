"""The policy gate decides in code, whatever the brain proposed."""

from __future__ import annotations

from datetime import UTC, datetime

from journey.domain import (
    CustomerProfile,
    EscalateToHuman,
    Handoff,
    Identity,
    SendMessage,
    UpdateCrm,
)
from policy.gate import CHANNEL_MAX_CHARS, GateInput, evaluate

NOW = datetime(2026, 11, 3, 15, 0, tzinfo=UTC)
STAGES = ["awareness", "consideration", "decision", "retention", "advocacy"]


def profile(**consent: str) -> CustomerProfile:
    return CustomerProfile(
        id="cus_1", lifecycle_stage="awareness", created_at=NOW, updated_at=NOW,
        identities=[Identity(kind="email", value="a@x.example"),
                    Identity(kind="phone", value="+1555"),
                    Identity(kind="web_chat_id", value="w1")],
        consent=consent,  # type: ignore[arg-type]
    )


def facts(intent: str = "pricing", handoff: Handoff | None = None, **consent: str) -> GateInput:
    return GateInput(profile=profile(**consent), inbound_channel="web_chat", intent=intent,
                     stages=STAGES, active_handoff=handoff)


def outcomes(result: object) -> list[tuple[str, list[str]]]:
    return [(v.outcome, v.reason_codes) for v in result.verdicts]  # type: ignore[attr-defined]


def test_reply_on_the_inbound_channel_is_allowed() -> None:
    result = evaluate([SendMessage(channel="web_chat", text="hi")], facts())
    assert outcomes(result) == [("allow", ["allowed"])]
    assert result.approved[0] == SendMessage(channel="web_chat", text="hi")


def test_other_channels_need_granted_consent() -> None:
    actions = [SendMessage(channel="email", text="a"), SendMessage(channel="sms", text="b")]
    assert outcomes(evaluate(actions, facts(email="granted"))) == [
        ("allow", ["allowed"]), ("deny", ["no_consent"])
    ]
    assert outcomes(evaluate(actions, facts(email="revoked", sms="granted"))) == [
        ("deny", ["consent_revoked"]), ("allow", ["allowed"])
    ]


def test_opt_out_allows_one_transactional_confirmation_only() -> None:
    actions = [SendMessage(channel="web_chat", text="You're unsubscribed."),
               SendMessage(channel="email", text="Sorry to see you go", purpose="marketing")]
    result = evaluate(actions, facts(intent="opt_out", email="granted"))
    assert outcomes(result) == [
        ("modify", ["opt_out_confirmation"]), ("deny", ["consent_revoked"])
    ]
    assert result.approved[0].purpose == "transactional"  # type: ignore[attr-defined]
    assert result.consent_changes == {"web_chat": "revoked"}


def test_an_open_handoff_silences_the_bot_and_blocks_a_second_escalation() -> None:
    handoff = Handoff(id="hof_1", conversation_id="c", customer_id="cus_1", queue="support",
                      reason="r", summary="s", priority="normal", created_at=NOW)
    actions = [SendMessage(channel="web_chat", text="I can help!"),
               EscalateToHuman(queue="sales", reason="r", summary="s")]
    assert outcomes(evaluate(actions, facts(handoff=handoff))) == [
        ("deny", ["handoff_active"]), ("deny", ["already_escalated"])
    ]


def test_no_address_no_send_and_one_message_per_channel() -> None:
    bare = GateInput(
        profile=CustomerProfile(id="c", lifecycle_stage="awareness", created_at=NOW,
                                updated_at=NOW, identities=[Identity(kind="web_chat_id",
                                                                     value="w")]),
        inbound_channel="web_chat", intent="pricing", stages=STAGES, active_handoff=None,
    )
    actions = [SendMessage(channel="web_chat", text="a"), SendMessage(channel="web_chat", text="b"),
               SendMessage(channel="whatsapp", text="c")]
    assert outcomes(evaluate(actions, bare)) == [
        ("allow", ["allowed"]), ("deny", ["duplicate_action"]), ("deny", ["no_identity"])
    ]


def test_long_text_is_trimmed_to_the_channel_limit() -> None:
    text = "This sentence is fine. " * 200
    result = evaluate([SendMessage(channel="web_chat", text=text)], facts())
    assert outcomes(result) == [("modify", ["trimmed_to_channel_limit"])]
    trimmed = result.approved[0].text  # type: ignore[attr-defined]
    assert len(trimmed) <= CHANNEL_MAX_CHARS["web_chat"]
    assert trimmed.endswith("fine.")


def test_crm_writes_are_limited_to_known_stages_and_writable_fields() -> None:
    actions = [
        UpdateCrm(stage="vip"),
        UpdateCrm(fields={"plan": "Enterprise"}),
        UpdateCrm(fields={"seats": 10, "favourite_colour": "red"}),
    ]
    result = evaluate(actions, facts())
    assert outcomes(result) == [
        ("deny", ["unknown_stage"]),
        ("deny", ["protected_field"]),
        ("modify", ["field_not_writable"]),
    ]
    assert result.approved[2].fields == {"seats": 10}  # type: ignore[attr-defined]
