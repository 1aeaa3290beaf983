"""Builders shared by the engine tests (test_engine_*.py): a customer, the message facts, a
proposed message or escalation, and one arbitration under the default policy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.domain import (
    CustomerProfile,
    EscalateToHuman,
    Identity,
    ProposedAction,
    SendMessage,
)
from policy.engine import Arbitration, Facts, PolicyEngine
from policy.escalation import MessageFacts
from policy.loader import load_policy
from policy.model import Policy

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


def escalate(queue: str = "support", priority: str = "normal") -> EscalateToHuman:
    return EscalateToHuman(queue=queue, reason="model", summary="s",  # type: ignore[arg-type]
                           priority=priority)  # type: ignore[arg-type]
