"""Stages are data; the declared rules move customers on evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from core.domain import CustomerProfile, Event
from policy.lifecycle import Lifecycle, load_lifecycle

NOW = datetime(2026, 11, 3, 15, 0, tzinfo=UTC)


def who(stage: str, **attributes: object) -> CustomerProfile:
    return CustomerProfile(id="c", lifecycle_stage=stage, attributes=attributes,
                           created_at=NOW, updated_at=NOW)


def views(*minutes_ago: int) -> list[Event]:
    return [Event(id=f"e{m}", customer_id="c", type="page_view", properties={"page": "pricing"},
                  occurred_at=NOW - timedelta(minutes=m)) for m in minutes_ago]


def test_pricing_surge_moves_to_decision_only_within_the_window() -> None:
    lc = load_lifecycle()
    assert lc.next_stage(who("awareness"), "small_talk", views(5, 12, 25), NOW) == (
        "decision", "pricing-page-surge"
    )
    assert lc.next_stage(who("awareness"), "small_talk", views(5, 12, 45), NOW) == (
        "awareness", None
    )


def test_rules_only_move_forward() -> None:
    lc = load_lifecycle()
    assert lc.next_stage(who("decision"), "pricing", [], NOW) == ("decision", None)
    assert lc.next_stage(who("consideration", plan="Growth"), None, [], NOW) == (
        "retention", "became-customer"
    )
    assert lc.next_stage(who("retention"), "praise_referral", [], NOW) == (
        "advocacy", "promoter"
    )


def test_a_company_can_define_its_own_stages() -> None:
    lc = Lifecycle.model_validate({
        "stages": ["lead", "trial", "paying"], "default_stage": "lead",
        "rules": [{"name": "t", "when": {"intent_in": ["demo_request"]}, "move_to": "trial"}],
    })
    assert lc.next_stage(who("lead"), "demo_request", [], NOW) == ("trial", "t")


def test_unknown_stages_in_rules_are_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown stage 'vip'"):
        Lifecycle.model_validate({
            "stages": ["a", "b"], "default_stage": "a",
            "rules": [{"name": "r", "when": {}, "move_to": "vip"}],
        })
