"""The profile row is locked so concurrent writers cannot lose an update, but with PostgreSQL's
FOR NO KEY UPDATE: a message, decision or event inserted meanwhile for the same customer takes
the foreign key's KEY SHARE lock, which FOR UPDATE would block. A turn recording its CRM changes
(profile row, then the conversation) and a new message arriving (conversation row, then the
foreign key on the profile) took those locks in opposite orders: PostgreSQL found the deadlock
and the message's POST /v1/messages answered 500 (tests/trust/test_turns_across_processes.py,
now and then). The lock is held deliberately here; the insert must not wait for it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, insert, text

from core.clock import FixedClock, sequential_ids
from core.domain import Identity
from core.effects import CrmChange
from memory import db, migrate
from memory.crm import apply_crm
from memory.db import make_engine
from memory.events import EventBatch
from memory.store import Store
from memory.sync import SyncOut

pytestmark = pytest.mark.postgres
NOW = datetime(2026, 11, 3, 15, 0, tzinfo=UTC)


def _lock_with_crm(conn: Connection, customer_id: str) -> None:
    apply_crm(conn, customer_id, CrmChange(fields={"seats": 5}), now=NOW)


def _lock_with_events_batch(conn: Connection, customer_id: str) -> None:
    EventBatch(conn, sequential_ids(), SyncOut(sequential_ids())).profiles([customer_id])


@pytest.mark.parametrize("lock", [_lock_with_crm, _lock_with_events_batch],
                         ids=["apply_crm", "events_batch"])
def test_a_locked_profile_does_not_block_a_message_for_the_same_customer(
    pg_url: str, lock: Callable[[Connection, str], None],
) -> None:
    engine = make_engine(pg_url)
    migrate.upgrade(engine)
    store = Store(engine, clock=FixedClock(NOW), ids=sequential_ids())
    customer = store.create_customer([Identity(kind="email", value="dana@example.com")],
                                     "awareness")
    conversation = store.open_conversation(customer.id)
    try:
        with engine.connect() as holder, holder.begin():
            lock(holder, customer.id)  # the profile row stays locked until the end
            with engine.connect() as other, other.begin():
                # waiting for the holder would be an error after 5 s, not a hang
                other.execute(text("SET LOCAL lock_timeout = '5s'"))
                other.execute(insert(db.messages).values(
                    id="msg_x", conversation_id=conversation.id,
                    customer_id=customer.id, direction="inbound", channel="web_chat",
                    text="hi", author="customer", created_at=NOW))
    finally:
        engine.dispose()
    assert [m.id for m in store.messages(conversation_id=conversation.id)] == ["msg_x"]
