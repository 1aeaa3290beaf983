"""Erasure and access through the real server (GDPR art. 15, 17, 20; CCPA).

Two customers talk to the bot, send events and get a handoff; one is exported, then erased.
Afterwards every file of the test's folder (the SQLite store with its -wal and -shm, the
LangGraph checkpoints, Chroma's files, the devbox outbox) is read byte by byte for the erased
customer's email, phone, name and a word only they wrote: none is left, while the other
customer's words and record are intact. On PostgreSQL every row of every table (the
checkpointer's too) is read the same way. What remains is an audit record without personal
data, and data naming the erased identities later is refused instead of recreating them.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import select

from agent.graph import thread_config
from core.clock import FixedClock
from journey.runtime import Container
from memory import db
from memory.checkpoints import pg_conninfo
from tests.conftest import ContainerFactory
from tests.server import client, drain, one_worker, running_server

ALICE = {"email": "alice.zephyrine@example.com", "phone": "+1 (415) 555-0142"}
BOB = {"email": "bob.marlowe@example.com"}
#: what must not be found anywhere after Alice's erasure (compared case-insensitively)
ALICE_TRACES = (b"zephyrine", b"4155550142", b"quixotebrandt", b"xylophonique")
BOB_TRACES = (b"marlowe", b"farnsworthy", b"marmaladeorbit")


@pytest.fixture
def served(make_container: ContainerFactory) -> Iterator[tuple[Container, str]]:
    container = make_container(api_keys={
        "test-admin": ["admin"],
        "dpo": {"name": "dpo@acme.example", "scopes": ["customers:erase"]},
        "reader": ["customers:read"],
        "crm": {"name": "crm-sync", "scopes": ["customers:write", "messages:write"]},
    })
    with running_server(container) as base:
        yield container, base


def files_with(root: Path, needles: tuple[bytes, ...]) -> dict[str, list[str]]:
    """Every file under ``root`` (raw bytes) that holds one of ``needles``, and which."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes().lower()
        hits = [n.decode() for n in needles if n in data]
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


def rows_with(container: Container, needles: tuple[bytes, ...]) -> list[str]:
    """PostgreSQL: which of ``needles`` any row of any table holds (the product's tables
    and the LangGraph checkpointer's)."""
    chunks: list[bytes] = []
    with container.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            chunks += [repr(tuple(row)).encode() for row in conn.execute(select(table))]
    with psycopg.connect(pg_conninfo(container.settings.resolved_database_url)) as conn:
        for name in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
            for row in conn.execute(f"SELECT * FROM {name}"):  # type: ignore[arg-type]
                chunks += [bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
                           for v in row]
    text = b"\n".join(chunks).lower()
    return [n.decode() for n in needles if n in text]


def customer(api: Any, identities: dict[str, str], name: str, **extra: Any) -> str:
    answer = api.put("/v1/customers", json={"identities": identities, "name": name, **extra})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def message(api: Any, channel: str, who: dict[str, str], text: str, ext: str) -> dict[str, Any]:
    answer = api.post("/v1/messages", json={"channel": channel, "customer": who, "text": text,
                                            "external_id": ext})
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def event(api: Any, event_id: str, who: dict[str, str], note: str, *, trait: bool = False) -> Any:
    return api.post("/v1/events", json={"events": [{
        "id": event_id, "type": "pricing_viewed", "customer": who,
        "properties": {"note": note}, "traits": {"favourite": note} if trait else {}}]})


def populate(container: Container, base: str) -> tuple[str, str]:
    """Alice and Bob, with consent, turns on two channels, events, a handoff, delivered
    replies. Returns their ids."""
    api = client(base, key="crm")
    alice = customer(api, ALICE, "Alice Quixotebrandt", timezone="Europe/Berlin",
                     consent={"email": {"marketing": {"status": "granted",
                                                      "source": "signup-form"}}})
    bob = customer(api, BOB, "Bob Farnsworthy")
    message(api, "email", ALICE, "What does the Growth plan include for a xylophonique "
            "studio?", "a-1")
    worker = one_worker(container)
    drain(worker)  # delivered before the handoff below stops the bot's later sends
    message(api, "sms", {"phone": ALICE["phone"]}, "I want to talk to a person about my "
            "xylophonique invoice", "a-2")
    message(api, "email", BOB, "What does the Growth plan include for marmaladeorbit?", "b-1")
    for ident, who, note in (("evt-a", ALICE, "xylophonique"), ("evt-b", BOB, "marmaladeorbit")):
        answer = event(api, ident, who, note, trait=True)
        assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
    drain(worker)  # the relay delivers the replies into the devbox files
    return alice, bob


def test_export_then_erase_leaves_nothing_of_the_customer(
    served: tuple[Container, str], tmp_path: Path,
) -> None:
    container, base = served
    alice, bob = populate(container, base)
    postgres = container.settings.is_postgres
    # the scan sees the customer before the erasure: in the store, the checkpoints, Chroma
    # and the devbox files (the vector writes that trail the turns landed first)
    flush = getattr(container.memory, "flush", None)
    if flush is not None:
        assert flush(), "the buffered vector writes did not land"
    before = files_with(tmp_path, ALICE_TRACES)
    if not postgres:
        assert any(f.startswith("journey.sqlite") for f in before), before
    assert any("checkpoints.sqlite" in f for f in before) or postgres, before
    assert any("chroma" in f for f in before), before
    assert any(f.endswith("outbox/email.jsonl") for f in before), before
    assert any(f.endswith("outbox/sms.jsonl") for f in before), before
    if postgres:
        assert set(rows_with(container, ALICE_TRACES)) == {t.decode() for t in ALICE_TRACES}

    reader = client(base, key="reader")
    export = reader.get(f"/v1/customers/{alice}/export")
    assert export.status_code == 200, export.text
    data = export.json()
    assert data["customer_id"] == alice
    assert data["profile"]["name"] == "Alice Quixotebrandt"
    assert sorted((i["kind"], i["value"]) for i in data["identities"]) == [
        ("email", "alice.zephyrine@example.com"), ("phone", "+14155550142")]
    assert [(e["channel"], e["purpose"], e["status"], e["source"])
            for e in data["consent_ledger"]] == [("email", "marketing", "granted", "signup-form")]
    texts = [m["text"] for c in data["conversations"] for m in c["messages"]]
    assert sum("xylophonique" in t for t in texts) == 2 and len(texts) >= 4, texts
    inbound = [m for c in data["conversations"] for m in c["messages"]
               if m["direction"] == "inbound"]
    assert {m["channel"] for m in inbound} == {"email", "sms"}
    assert len(data["decisions"]) == 2
    assert {d["inbound_message_id"] for d in data["decisions"]} == {m["id"] for m in inbound}
    assert [h["queue"] for h in data["handoffs"]] == ["support"]
    assert data["handoffs"][0]["events"][0]["kind"] == "created"
    assert {o["status"] for o in data["outbox"]} == {"sent"} and data["outbox"]
    assert [e["id"] for e in data["events"]] == ["evt-a"]
    assert data["events"][0]["properties"] == {"note": "xylophonique"}
    assert data["jobs"] and all(j["customer_id"] == alice for j in data["jobs"])
    assert "marmaladeorbit" not in export.text and "marlowe" not in export.text
    assert reader.get("/v1/customers/cus_nobody/export").status_code == 404

    # a reader may not erase; the erasure scope may
    assert reader.delete(f"/v1/customers/{alice}").status_code == 403
    dpo = client(base, key="dpo")
    erased = dpo.delete(f"/v1/customers/{alice}")
    assert erased.status_code == 200, erased.text
    record = erased.json()
    assert record["customer_id"] == alice and record["by"] == "dpo@acme.example"
    assert record["already"] is False and record["merged_ids"] == []
    counts = record["counts"]
    assert counts["customers"] == 1 and counts["identities"] == 2
    assert counts["messages"] >= 4 and counts["decisions"] == 2
    assert counts["events"] == 1 and counts["handoffs"] == 1 and counts["handoff_events"] >= 1
    assert counts["consent_events"] == 1 and counts["outbox"] >= 2
    assert counts["checkpoint_threads"] >= 2 and counts["vector_records"] >= 4
    assert counts["file_lines"] >= 2 and counts["identities_hashed"] == 2
    assert record["consent"] == [{"channel": "email", "purpose": "marketing",
                                  "previous": "granted", "status": "revoked",
                                  "source": "erasure"}]
    assert not any(t.decode() in erased.text.lower() for t in ALICE_TRACES)

    # nothing of Alice on disk, nor in any row
    assert files_with(tmp_path, ALICE_TRACES) == {}
    if postgres:
        assert rows_with(container, ALICE_TRACES) == []
    else:  # the write-ahead logs were checkpointed and truncated
        for wal in tmp_path.rglob("*-wal"):
            assert wal.stat().st_size == 0, wal
    # nothing of Alice in the stores either
    assert container.memory.count(alice) == 0
    for m in inbound:
        assert not container.orchestrator.graph.get_state(thread_config(m["id"])).values

    # Bob is untouched: his words are still on disk, his record answers
    after = files_with(tmp_path, BOB_TRACES)
    assert any("chroma" in f for f in after), after
    assert any(f.endswith("outbox/email.jsonl") for f in after), after
    if not postgres:
        assert any(f.startswith("journey.sqlite") for f in after), after
    else:
        assert set(rows_with(container, BOB_TRACES)) == {t.decode() for t in BOB_TRACES}
    bob_view = reader.get(f"/v1/customers/{bob}")
    assert bob_view.status_code == 200, bob_view.text
    assert bob_view.json()["profile"]["name"] == "Bob Farnsworthy"
    assert [e["id"] for e in bob_view.json()["events"]] == ["evt-b"]
    assert container.memory.count(bob) >= 2
    bob_export = reader.get(f"/v1/customers/{bob}/export").json()
    assert any("marmaladeorbit" in m["text"] for c in bob_export["conversations"]
               for m in c["messages"])

    # Alice's id answers 404 saying when she was erased; a second DELETE answers the record
    gone = reader.get(f"/v1/customers/{alice}")
    assert gone.status_code == 404 and "erased at" in gone.json()["detail"]
    again = dpo.delete(f"/v1/customers/{alice}")
    assert again.status_code == 200, again.text
    assert again.json() == {**record, "already": True}
    assert dpo.delete("/v1/customers/cus_nobody").status_code == 404

    # late data naming her is refused and does not recreate her
    api = client(base, key="crm")
    late = event(api, "evt-late", {"email": "Alice.Zephyrine@example.com"}, "xylophonique")
    assert late.status_code == 422, late.text
    assert re.search(r"email: identity erased at \d{4}-", late.text), late.text
    # in a batch, only the event naming her is refused; the others are accepted
    mixed = api.post("/v1/events", json={"events": [
        {"id": "evt-bob", "type": "pricing_viewed", "customer": BOB},
        {"id": "evt-late-2", "type": "pricing_viewed", "customer": ALICE}]})
    assert mixed.status_code == 200, mixed.text
    assert [r["status"] for r in mixed.json()["results"]] == ["accepted", "rejected"]
    assert re.match(r"customer\.(email|phone): identity erased at",
                    mixed.json()["results"][1]["errors"][0])
    upsert = api.put("/v1/customers", json={"identities": {"phone": "415-555-0142"},
                                             "name": "Alice Quixotebrandt"})
    assert upsert.status_code == 422 and "phone: identity erased at" in upsert.text
    assert reader.get("/v1/customers", params={"email": ALICE["email"]}).status_code == 404
    assert container.store.counts()["customers"] == 1
    assert files_with(tmp_path, ALICE_TRACES) == {}

    # the audit record holds no personal data and keeps hashes, not identities
    with container.engine.connect() as conn:
        from memory.erasure import erased_identities, erasures

        audit = [repr(tuple(r)) for t in (erasures, erased_identities)
                 for r in conn.execute(select(t))]
    assert len(audit) == 3  # the record and two hashes
    assert not any(t.decode() in "\n".join(audit).lower() for t in ALICE_TRACES)


def test_retention_purges_old_messages_and_events_with_their_turns(
    make_container: ContainerFactory, clock: FixedClock, tmp_path: Path,
) -> None:
    container = make_container(retention_days=30)
    worker = one_worker(container)
    with running_server(container) as base:
        api = client(base)
        old = message(api, "email", BOB, "Old question about marmaladeorbit pricing", "o-1")
        assert event(api, "evt-old", BOB, "marmaladeorbit").json()["accepted"] == 1
        drain(worker)  # the reply is delivered; nothing is older than 30 days yet
        customer_id = old["customer_id"]
        assert container.memory.count(customer_id) >= 2
        assert b"marmaladeorbit" in json.dumps(files_with(tmp_path, BOB_TRACES)).encode()

        clock.advance(days=31)
        new = message(api, "email", BOB, "New question about the farnsworthy integration",
                      "n-1")
        assert event(api, "evt-new", BOB, "farnsworthy").json()["accepted"] == 1
        drain(worker)  # the first pass of the clock's new hour purges

        view = api.get(f"/v1/customers/{customer_id}")
    assert view.status_code == 200, view.text
    assert [e["id"] for e in view.json()["events"]] == ["evt-new"]
    texts = [m.text for m in container.store.messages(customer_id=customer_id)]
    assert len(texts) >= 2 and not any("marmaladeorbit" in t for t in texts)
    assert any("farnsworthy" in t for t in texts)
    assert container.store.decision_for_inbound(old["message_id"]) is None
    assert container.store.decision_for_inbound(new["message_id"]) is not None
    assert not container.orchestrator.graph.get_state(thread_config(old["message_id"])).values
    assert container.orchestrator.graph.get_state(thread_config(new["message_id"])).values
    assert container.memory.count(customer_id) == len(texts)
    # the old words are gone from every file but the checkpoints, and there only inside the
    # new turn's thread, as the history that turn read before the purge (it goes when that
    # turn ages out); the new words are there; the profile stays
    remaining = files_with(tmp_path, (b"marmaladeorbit", b"farnsworthy"))
    assert any("farnsworthy" in hits for hits in remaining.values()), remaining
    assert [f for f, hits in remaining.items() if "marmaladeorbit" in hits
            and not f.endswith("checkpoints.sqlite")] == [], remaining
    assert threads_with(container, b"marmaladeorbit") <= {f"turn:{new['message_id']}"}
    if container.settings.is_postgres:
        with container.engine.connect() as conn:
            rows = [repr(tuple(r)) for t in db.metadata.sorted_tables
                    for r in conn.execute(select(t))]
        assert "marmaladeorbit" not in "\n".join(rows)
    assert container.store.get_customer(customer_id) is not None


def threads_with(container: Container, needle: bytes) -> set[str]:
    """The LangGraph threads whose checkpoints or pending writes hold ``needle``."""
    found: set[str] = set()
    if container.settings.is_postgres:
        queries = ("SELECT thread_id, checkpoint::text FROM checkpoints",
                   "SELECT thread_id, blob FROM checkpoint_blobs",
                   "SELECT thread_id, blob FROM checkpoint_writes")
        with psycopg.connect(pg_conninfo(container.settings.resolved_database_url)) as conn:
            rows = [r for q in queries for r in conn.execute(q)]  # type: ignore[call-overload]
    else:
        with sqlite3.connect(container.settings.data_dir / "checkpoints.sqlite") as conn:
            rows = [r for q in ("SELECT thread_id, checkpoint, metadata FROM checkpoints",
                                "SELECT thread_id, value FROM writes")
                    for r in conn.execute(q)]
    for thread_id, *values in rows:
        data = b"".join(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
                        for v in values if v is not None)
        if needle in data.lower():
            found.add(str(thread_id))
    return found


def test_the_person_writing_again_gets_a_fresh_profile_and_the_audit_notes_it(
    served: tuple[Container, str], tmp_path: Path,
) -> None:
    _, base = served
    api = client(base, key="crm")
    alice = customer(api, ALICE, "Alice Quixotebrandt")
    message(api, "email", ALICE, "What does the Growth plan include?", "r-1")
    first = client(base, key="dpo").delete(f"/v1/customers/{alice}").json()

    again = api.post("/v1/messages", json={"channel": "email", "customer": ALICE,
                                           "text": "Hello again", "external_id": "r-2"})
    assert again.status_code == 200, again.text
    fresh = again.json()["customer_id"]
    assert fresh != alice
    view = client(base, key="reader").get(f"/v1/customers/{fresh}").json()
    assert view["profile"]["name"] is None  # nothing of the erased profile came back
    assert len(view["conversations"]) == 1  # a new conversation, not the erased one
    record = client(base, key="dpo").delete(f"/v1/customers/{alice}").json()
    assert record["id"] == first["id"] and record["recreated"]["times"] == 1
    assert "recreated after erasure" in record["recreated"]["note"]
    # the person is back: data naming them attaches to the fresh profile again
    late = event(api, "evt-back", ALICE, "back")
    assert late.status_code == 200 and late.json()["results"][0]["customer_id"] == fresh
