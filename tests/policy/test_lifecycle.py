"""Stages are data; the declared rules move customers on evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.domain import CustomerProfile, Event
from policy.lifecycle import Lifecycle, LifecycleError, load_lifecycle

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


def test_on_event_matches_only_the_signal_being_handled() -> None:
    lc = load_lifecycle()
    nps = Event(id="n", customer_id="c", type="nps_answered", properties={"score": 9},
                occurred_at=NOW)
    low = nps.model_copy(update={"properties": {"score": 8}})
    text = nps.model_copy(update={"properties": {"score": "9"}})  # not a number
    assert lc.next_stage(who("retention"), None, [nps], NOW, signal=nps) == (
        "advocacy", "promoter-score")
    assert lc.next_stage(who("retention"), None, [low], NOW, signal=low) == ("retention", None)
    assert lc.next_stage(who("retention"), None, [text], NOW, signal=text) == ("retention", None)
    # the same event among the recent ones, but a message being handled: no move
    assert lc.next_stage(who("retention"), "small_talk", [nps], NOW) == ("retention", None)
    order = Event(id="o", customer_id="c", type="checkout_completed", occurred_at=NOW)
    assert lc.next_stage(who("churned"), None, [order], NOW, signal=order) == (
        "retention", "won-back")


def test_a_misspelt_rule_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "lifecycle.yaml"
    path.write_text(
        "stages: [lead, paying]\n"
        "default_stage: lead\n"
        "rules:\n"
        "  - name: bought\n"
        "    when:\n"
        "      on_event: {type: order_completed, where: {total: {greater: 10}}}\n"
        "    move_to: paying\n"
        "  - name: typo\n"
        "    when: {intent: [pricing]}\n"
        "    move_to: paying\n"
    )
    with pytest.raises(LifecycleError) as caught:
        load_lifecycle(path)
    message = str(caught.value)
    assert "line 6" in message and "unknown comparison ['greater']" in message
    assert "line 9" in message and "intent" in message
