"""The relational store on SQLite and PostgreSQL: schema, identities, atomic turns."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from core.clock import FixedClock, sequential_ids
from core.domain import BrainInfo, Decision, Handoff, Identity, SendMessage, Verdict
from core.effects import Activity, CrmChange, OutboundMessage, TurnEffects
from memory import db, migrate
from memory.store import Store


@pytest.fixture
def store(database_url: str, clock: FixedClock) -> Store:
    engine = db.make_engine(database_url)
    migrate.upgrade(engine)
    return Store(engine, clock=clock, ids=sequential_ids())


def test_migrations_build_exactly_the_declared_schema(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []


def test_migrations_downgrade_to_nothing(store: Store) -> None:
    migrate.downgrade(store.engine, "base")
    assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(store.engine)
    assert "decisions" in inspect(store.engine).get_table_names()


def test_identities_resolve_to_one_profile_and_new_ones_are_linked(store: Store) -> None:
    email = Identity(kind="email", value="a@x.example")
    phone = Identity(kind="phone", value="+15550001")
    first, created = store.resolve_customer([email], "awareness")
    again, created_again = store.resolve_customer([phone, email], "awareness")
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert {(i.kind, i.value) for i in again.identities} == {
        ("email", "a@x.example"), ("phone", "+15550001")
    }
    other, _ = store.resolve_customer([Identity(kind="email", value="b@x.example")], "awareness")
    assert other.id != first.id


def _turn(store: Store, text: str = "hi", external_id: str | None = "e1") -> tuple[str, str, str]:
    profile, _ = store.resolve_customer([Identity(kind="web_chat_id", value="w1")], "awareness")
    conv = store.open_conversation(profile.id)
    accepted = store.accept_inbound(conv, "web_chat", text, external_id)
    return profile.id, conv.id, accepted.message.id


def _decision(customer_id: str, conversation_id: str, inbound_id: str, did: str) -> Decision:
    return Decision(
        id=did, conversation_id=conversation_id, customer_id=customer_id,
        inbound_message_id=inbound_id, intent="pricing", intent_confidence=0.9,
        stage="consideration", previous_stage="awareness", sentiment="neutral",
        proposed=[SendMessage(channel="web_chat", text="Growth is $399/month.")],
        verdicts=[Verdict(action_index=0, tool="send_message", outcome="allow",
                          reason_codes=["allowed"], executed=True)],
        reasons=["intent:pricing"], reply="Growth is $399/month.", brain=BrainInfo(name="rules"),
        latency_ms=3.0, created_at=datetime(2026, 11, 3, 15, 0, tzinfo=UTC),
    )


def test_inbound_is_stored_once_per_channel_and_external_id(store: Store) -> None:
    _, conv_id, first = _turn(store)
    conv = store.get_conversation(conv_id)
    assert conv is not None
    again = store.accept_inbound(conv, "web_chat", "hi", "e1")
    other_channel = store.accept_inbound(conv, "email", "hi", "e1")
    assert (again.is_new, again.message.id) == (False, first)
    assert other_channel.is_new
    assert store.inbound_count("web_chat", "e1") == 1


def test_a_turn_commits_whole_and_only_once(store: Store) -> None:
    customer, conv, inbound = _turn(store)
    effects = TurnEffects(
        outbound=[OutboundMessage(message_id="msg_out", outbox_id="out_1", channel="web_chat",
                                  address="w1", text="Growth is $399/month.",
                                  purpose="service", status="sent")],
        crm=CrmChange(stage="consideration", fields={"seats": 12}),
        activities=[Activity(id="act_1", kind="note", body={"text": "asked price"})],
    )
    decision = _decision(customer, conv, inbound, "dec_1")
    assert store.commit_turn(decision, effects) == decision
    # a second worker finishing the same turn writes nothing and gets the first decision
    again = store.commit_turn(_decision(customer, conv, inbound, "dec_2"), effects)
    assert again.id == "dec_1"
    assert store.counts() == {
        "customers": 1, "messages": 2, "decisions": 1, "outbox": 1, "handoffs": 0, "events": 0
    }
    profile = store.get_customer(customer)
    assert profile is not None
    assert (profile.lifecycle_stage, profile.attributes) == ("consideration", {"seats": 12})
    assert store.decision_for_inbound(inbound) == decision


def test_a_failing_turn_writes_nothing(store: Store, clock: FixedClock) -> None:
    customer, conv, inbound = _turn(store)
    bad = TurnEffects(
        outbound=[OutboundMessage(message_id="msg_out", outbox_id="out_1", channel="web_chat",
                                  address="w1", text="hello", purpose="service")],
        handoffs=[Handoff(id="hof_1", conversation_id="conv_missing", customer_id=customer,
                          queue="support", reason="r", summary="s", priority="normal",
                          created_at=clock.now())],
    )
    with pytest.raises(Exception):  # noqa: B017 - the FK violation differs per backend
        store.commit_turn(_decision(customer, conv, inbound, "dec_1"), bad)
    counts = store.counts()
    assert (counts["decisions"], counts["outbox"], counts["messages"]) == (0, 0, 1)
    assert store.find_inbound("web_chat", "e1").turn_status == "pending"  # type: ignore[union-attr]
