"""What the LangGraph checkpointer keeps of a turn: a turn that needs no approval leaves one
small checkpoint (the decision it recorded, not the context it read); a turn held for approval
is checkpointed in full, and its pause survives a restart."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg

from agent.graph import FINISHED_TURN_KEEPS, thread_config
from core.domain import Identity
from journey.runtime import Container
from journey.turns import InboundRequest, TurnResult
from memory.checkpoints import pg_conninfo
from tests.conftest import ContainerFactory

COMPLAINT = "I'm really unhappy with the service, this is the third outage this month"


def rows(c: Container, thread_id: str) -> tuple[int, int, bytes]:
    """(checkpoints, pending writes, every byte stored) of one thread."""
    if c.settings.is_postgres:
        with psycopg.connect(pg_conninfo(c.settings.resolved_database_url)) as conn:
            n = conn.execute("SELECT COUNT(*) FROM checkpoints WHERE thread_id = %s",
                             (thread_id,)).fetchone()
            w = conn.execute("SELECT COUNT(*) FROM checkpoint_writes WHERE thread_id = %s",
                             (thread_id,)).fetchone()
            data = b"".join(
                bytes(r[0]) if isinstance(r[0], bytes | memoryview) else str(r[0]).encode()
                for q in ("SELECT checkpoint::text FROM checkpoints WHERE thread_id = %s",
                          "SELECT blob FROM checkpoint_blobs WHERE thread_id = %s",
                          "SELECT blob FROM checkpoint_writes WHERE thread_id = %s")
                for r in conn.execute(q, (thread_id,)) if r[0] is not None)
        assert n is not None and w is not None
        return int(n[0]), int(w[0]), data
    with sqlite3.connect(c.settings.data_dir / "checkpoints.sqlite") as lite:
        found = lite.execute("SELECT checkpoint FROM checkpoints WHERE thread_id = ?",
                             (thread_id,)).fetchall()
        writes = lite.execute("SELECT value FROM writes WHERE thread_id = ?",
                              (thread_id,)).fetchall()
    return len(found), len(writes), b"".join(bytes(r[0]) for r in found + writes)


def ask(c: Container, text: str, web_chat_id: str = "wc_lena") -> TurnResult:
    return c.orchestrator.handle_message(InboundRequest.model_validate(
        {"channel": "web_chat", "customer": {"web_chat_id": web_chat_id}, "text": text}))


def test_a_turn_without_approval_keeps_one_small_checkpoint(
    make_container: ContainerFactory,
) -> None:
    c = make_container()
    first = ask(c, "what does the Growth plan include for the zanzibarquill team?")
    turn = ask(c, "and how much is the Starter plan per month?")
    assert not any(a.approval_id for a in turn.actions)
    thread = thread_config(turn.message_id)["configurable"]["thread_id"]
    checkpoints, writes, data = rows(c, thread)
    # one checkpoint, written when the run ended (not one per step), no pending writes
    assert (checkpoints, writes) == (1, 0)
    # the decision is kept (what get_state shows), the context the turn read is not: the
    # profile, the earlier message it saw in its history, its own inbound message
    snapshot = c.orchestrator.graph.get_state(thread_config(turn.message_id))
    assert snapshot.next == ()
    assert snapshot.values["decision"]["id"] == turn.decision.id
    assert set(snapshot.values) <= FINISHED_TURN_KEEPS
    assert b"zanzibarquill" not in data
    assert len(data) < 10_000
    assert first.decision.id != turn.decision.id


def complain(c: Container) -> TurnResult:
    """A paying customer complains; the rules brain proposes a goodwill credit (held)."""
    if c.store.find_customer(Identity(kind="email", value="rosa@bluefin.example")) is None:
        c.store.create_customer(
            [Identity(kind="email", value="rosa@bluefin.example"),
             Identity(kind="web_chat_id", value="wc_rosa")],
            "retention", name="Rosa Blue", consent={"web_chat": "granted"})
    return c.orchestrator.handle_message(InboundRequest.model_validate(
        {"channel": "web_chat",
         "customer": {"email": "rosa@bluefin.example", "web_chat_id": "wc_rosa"},
         "text": COMPLAINT}))


def test_a_turn_held_for_approval_is_checkpointed_in_full_and_survives_a_restart(
    make_container: ContainerFactory, tmp_path: Path,
) -> None:
    data_dir = tmp_path / "shared"
    before = make_container(data_dir=data_dir)
    turn = complain(before)
    [pending] = before.store.approvals(status="pending")
    thread = thread_config(turn.message_id)["configurable"]["thread_id"]
    checkpoints, writes, _ = rows(before, thread)
    assert checkpoints == 1 and writes >= 1  # the pause: its interrupt is a pending write
    state: dict[str, Any] = before.orchestrator.graph.get_state(
        thread_config(turn.message_id)).values
    assert state["approval_id"] == pending.id and state["profile"]["name"] == "Rosa Blue"
    before.close()

    after = make_container(data_dir=data_dir)
    assert after.orchestrator.graph.get_state(
        thread_config(turn.message_id)).next == ("await_approval",)
    approved = after.orchestrator.decide_approval(pending.id, approve=True, by="ana@acme")
    assert approved.status == "approved" and approved.result["executed"] is True
    done = after.orchestrator.graph.get_state(thread_config(turn.message_id))
    assert done.next == () and done.values["approval"]["status"] == "approved"
    assert json.dumps(done.values["decision"]["id"]) == json.dumps(turn.decision.id)
