"""Signals in: POST /v1/events on a real server, identity resolution and profile merges."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.clock import FixedClock
from core.domain import Identity
from journey.turns import CustomerRef, InboundRequest
from memory.vector import MemoryRecord
from tests.conftest import ContainerFactory
from tests.server import client, running_server


def _event(eid: str, etype: str, clock: FixedClock, minutes: float = 0,
           **props: Any) -> dict[str, Any]:
    return {
        "id": eid, "type": etype, "customer": {"email": "dana@example.com"},
        "properties": props,
        "occurred_at": (clock.now() + timedelta(minutes=minutes)).isoformat(),
    }


def test_a_batch_accepts_good_events_rejects_bad_ones_one_by_one_and_ignores_repeats(
    make_container: ContainerFactory, clock: FixedClock
) -> None:
    container = make_container()
    batch = [
        {**_event("e1", "page_view", clock, page="pricing"), "traits": {"plan_interest": "pro"}},
        {"id": "e2", "customer": {"email": "dana@example.com"}},  # no type
        {**_event("e3", "page_view", clock, page="pricing"), "occurred_at": "2026-11-03T10:00"},
        _event("e4", "page_view", clock, minutes=60, page="pricing"),  # an hour ahead
        {**_event("e5", "Page View", clock)},
        "not an event",
        _event("e1", "page_view", clock, page="pricing"),  # a repeat in the same batch
    ]
    with running_server(container) as base, client(base) as http:
        first = http.post("/v1/events", json={"events": batch})
        again = http.post("/v1/events", json={"events": batch[:1]})
        all_bad = http.post("/v1/events", json={"events": batch[1:3]})
        empty = http.post("/v1/events", json={"events": []})
        not_a_batch = http.post("/v1/events", json=[batch[0]])
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 1, 5)
    by_index = {r["index"]: r for r in body["results"]}
    assert by_index[0]["status"] == "accepted"
    assert any("type" in e for e in by_index[1]["errors"])
    assert any("timezone" in e for e in by_index[2]["errors"])
    assert any("in the future" in e for e in by_index[3]["errors"])
    assert any("lowercase" in e for e in by_index[4]["errors"])
    assert by_index[5]["status"] == "rejected"
    assert by_index[6]["status"] == "duplicate"
    assert again.json()["results"][0]["status"] == "duplicate"
    assert all_bad.status_code == 422
    assert all_bad.json()["rejected"] == 2
    assert empty.status_code == 422 and not_a_batch.status_code == 422
    profile = container.store.find_customer(Identity(kind="email", value="dana@example.com"))
    assert profile is not None
    # the profile moved at once: the trait, and the declared pricing signal's intent score
    assert profile.attributes["plan_interest"] == "pro"
    assert profile.attributes["intent_scores"] == {"purchase": 0.15}
    assert container.store.counts()["events"] == 1


def test_signals_move_the_stage_by_the_declared_rule(
    make_container: ContainerFactory, clock: FixedClock
) -> None:
    container = make_container()
    with running_server(container) as base, client(base) as http:
        results = [
            http.post("/v1/events", json={"events": [
                _event(f"pv{i}", "page_view", clock, minutes=-10 + i, page="pricing")
            ]}).json()["results"][0]
            for i in range(3)
        ]
    assert [r["stage"] for r in results] == [None, None, "decision"]
    profile = container.store.get_customer(results[0]["customer_id"])
    assert profile is not None and profile.lifecycle_stage == "decision"
    change = [a for a in container.store.crm_activities(profile.id) if a["kind"] == "stage_change"]
    assert change[0]["body"]["rule"] == "pricing-page-surge"
    assert profile.attributes["intent_scores"]["purchase"] == 0.45


def test_a_visitor_who_gives_a_known_email_is_merged_keeping_all_history(
    make_container: ContainerFactory, clock: FixedClock
) -> None:
    container = make_container()
    store = container.store
    known = store.create_customer(
        [Identity(kind="email", value="dana@example.com")], "consideration", name="Dana Reyes",
        consent={"email": {"service": "granted", "marketing": "granted"}},
        attributes={"plan": "trial"},
    )
    orch = container.orchestrator
    chat = orch.handle_message(InboundRequest(
        channel="web_chat", customer=CustomerRef(web_chat_id="wc_42"),
        text="Does the Growth plan include SSO?", external_id="c1",
    ))
    visitor = chat.customer_id
    assert visitor != known.id
    container.signals.ingest([  # type: ignore[union-attr]
        {"id": "v1", "type": "page_view", "customer": {"web_chat_id": "wc_42"},
         "properties": {"page": "pricing"}},
    ])
    store.update_customer(visitor, consent={"email": {"marketing": "revoked"}})
    clock.advance(minutes=5)
    # the visitor now writes by email: the same person, two profiles → one
    mail = orch.handle_message(InboundRequest(
        channel="email",
        customer=CustomerRef(email="dana@example.com", web_chat_id="wc_42"),
        text="Following up on what I asked in the chat: is SSO on Growth?", external_id="m1",
    ))
    assert mail.customer_id == known.id
    merged = store.get_customer(visitor)
    assert merged is not None and merged.id == known.id  # the old id resolves to the survivor
    assert {(i.kind, i.value) for i in merged.identities} == {
        ("email", "dana@example.com"), ("web_chat_id", "wc_42")
    }
    # every message and event is the survivor's now, in one conversation
    texts = [m.text for m in store.messages(customer_id=known.id)]
    assert "Does the Growth plan include SSO?" in texts
    assert texts[-2].startswith("Following up on what I asked in the chat")
    assert {m.conversation_id for m in store.messages(customer_id=known.id)} == {
        mail.conversation_id
    }
    assert [e.id for e in store.recent_events(known.id, since=clock.now() - timedelta(days=1))
            ] == ["v1"]
    # consent: the revocation on the merged side stands; attributes: the survivor's win
    assert merged.consent_for("email", "marketing") == "revoked"
    assert merged.attributes["plan"] == "trial"
    assert merged.attributes["intent_scores"] == {"purchase": 0.15}
    # recorded, with what moved
    (record,) = store.merges(known.id)
    assert (record["survivor_id"], record["merged_id"]) == (known.id, visitor)
    assert record["by"] == "identity_resolution" and "web_chat_id=wc_42" in record["reason"]
    assert record["moved"]["messages"] >= 2 and record["moved"]["events"] == 1
    assert record["moved"]["conversations"] == 1
    # the vector memory follows: the survivor's search finds what was said in chat
    hits = container.memory.search(known.id, "single sign-on on the Growth plan", k=5)
    assert any(h.text == "Does the Growth plan include SSO?" for h in hits)
    assert container.memory.search(visitor, "SSO", k=5) == []
    # and the email turn saw the chat message as recent context
    assert mail.decision.inputs is not None


def test_the_email_turn_sees_what_was_said_in_web_chat(
    make_container: ContainerFactory,
) -> None:
    """Context follows the customer across channels: the brain's recent messages include the
    web-chat exchange when the question arrives by email."""
    seen: list[list[str]] = []
    container = make_container()
    brain = container.orchestrator.services.brain
    original = brain.decide

    def spy(data: Any) -> Any:
        seen.append([f"{m.channel}:{m.text}" for m in data.recent])
        return original(data)

    container.orchestrator.services.brain = type(  # a recording brain, same decisions
        "Spy", (), {"name": brain.name, "decide": staticmethod(spy)}
    )()
    orch = container.orchestrator
    orch.handle_message(InboundRequest(
        channel="web_chat", customer=CustomerRef(web_chat_id="wc_7", email="lee@example.com"),
        text="What does the Growth plan cost?", external_id="w1",
    ))
    orch.handle_message(InboundRequest(
        channel="email", customer=CustomerRef(email="lee@example.com"),
        text="And the plan you mentioned in chat, does it have SSO?", external_id="e1",
    ))
    assert "web_chat:What does the Growth plan cost?" in seen[1]
    assert any(s.startswith("web_chat:") and "Growth" in s for s in seen[1][1:])


def test_merging_by_api_is_recorded_and_idempotent(
    make_container: ContainerFactory,
) -> None:
    container = make_container()
    store = container.store
    a = store.create_customer([Identity(kind="email", value="a@example.com")], "retention")
    b = store.create_customer([Identity(kind="phone", value="+15550100")], "awareness")
    container.memory.add([MemoryRecord(
        id="m_b", customer_id=b.id, conversation_id="c", channel="sms", direction="inbound",
        text="my invoice is wrong", created_at=b.created_at,
    )])
    body = {"merge": b.id, "reason": "same person, confirmed on a call", "by": "agent:kim"}
    with running_server(container) as base, client(base) as http:
        first = http.post(f"/v1/customers/{a.id}/merge", json=body)
        second = http.post(f"/v1/customers/{a.id}/merge", json=body)
        missing = http.post("/v1/customers/cus_nope/merge", json=body)
        reader = http.get(f"/v1/customers/{b.id}")
        writer = http.post(f"/v1/customers/{a.id}/merge", json=body,
                           headers={"Authorization": "Bearer test-writer"})
    assert first.status_code == 200, first.text
    assert second.status_code == 200 and second.json()["id"] == first.json()["id"]
    assert missing.status_code == 404 and "cus_nope" in missing.json()["detail"]
    assert writer.status_code == 403
    view = reader.json()
    assert view["profile"]["id"] == a.id and view["profile"]["lifecycle_stage"] == "retention"
    assert view["merges"][0]["reason"] == "same person, confirmed on a call"
    assert any(a["kind"] == "merge" for a in view["crm_activities"])
    assert container.memory.count(a.id) == 1 and container.memory.count(b.id) == 0
