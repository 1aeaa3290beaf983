"""The human inbox over HTTP: claim, reply, note, resolve, return-to-bot; conversation ownership;
routing and SLAs; the packet across channels; signed webhooks. Real server, real database
(SQLite and PostgreSQL), real Chroma, the rules brain (or a scripted model where it matters)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from channels.webhook import verify_webhook
from core.clock import FixedClock
from core.domain import Identity
from journey.runtime import Container
from tests.conftest import ContainerFactory
from tests.fakes import ScriptedModel, content, decision
from tests.providers import WebhookReceiver
from tests.server import client, drain, one_worker, running_server

KEYS: dict[str, Any] = {
    "test-admin": ["admin"],
    "test-writer": ["messages:write"],
    "alice-key": {"name": "Alice", "scopes": ["inbox:support", "inbox:sales"]},
    "bob-key": {"name": "Bob", "scopes": ["inbox"]},
    "carol-key": {"name": "Carol", "scopes": ["inbox:sales"]},
    "reader-key": ["conversations:read"],
}
ASK_FOR_PERSON = "Can I talk to a person please?"


def _say(http: httpx.Client, text: str, *, channel: str = "web_chat",
         who: dict[str, str] | None = None) -> dict[str, Any]:
    customer = who or {"web_chat_id": "wc_dana0001"}
    response = http.post("/v1/messages", json={"channel": channel, "customer": customer,
                                               "text": text})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _open_handoff(admin: httpx.Client, **who: str) -> dict[str, Any]:
    turn = _say(admin, ASK_FOR_PERSON, who=who or None)
    [handoff] = [h for h in admin.get("/v1/handoffs", params={"status": "active"}).json()
                 if h["customer_id"] == turn["customer_id"]]
    return handoff


@pytest.fixture
def inbox(make_container: ContainerFactory) -> Iterator[tuple[Container, str]]:
    container = make_container(api_keys=KEYS)
    with running_server(container) as base:
        yield container, base


def test_a_handoff_from_request_to_return_to_bot(
    inbox: tuple[Container, str], clock: FixedClock
) -> None:
    """The whole life of a handoff through the API, with the customer's side checked at each
    step: the bot goes silent while a person owns the conversation and answers again after."""
    container, base = inbox
    worker = one_worker(container)
    admin, alice, bob = client(base), client(base, "alice-key"), client(base, "bob-key")

    turn = _say(admin, ASK_FOR_PERSON)
    assert "escalate_to_human" in [a["tool"] for a in turn["actions"]]
    drain(worker)  # the bot's acknowledgement reaches the chat
    customer_id, conversation_id = turn["customer_id"], turn["conversation_id"]
    [view] = alice.get("/v1/handoffs", params={"queue": "support", "status": "open"}).json()
    assert view["customer_id"] == customer_id and view["queue"] == "support"
    assert view["priority"] == "normal" and view["channel"] == "web_chat"
    assert view["claim_sla"] == {"due_at": "2026-11-03T15:10:00Z", "state": "ok",
                                 "seconds": 600.0, "label": "claim in 10m"}
    assert view["routing"] == ["escalation_rule:explicit_human_request"]
    hid = view["id"]

    packet = alice.get(f"/v1/handoffs/{hid}").json()
    assert packet["intent"] == "human_request" and packet["sentiment"] in ("neutral", "positive")
    assert "escalation_rule:explicit_human_request" in " ".join(packet["reason_codes"])
    assert [(m["author"], m["text"]) for m in packet["messages"]][:1] == [
        ("customer", ASK_FOR_PERSON)]
    assert [e["kind"] for e in packet["events"]] == ["created"]

    # four minutes later Alice claims; Bob's claim is refused; Alice's second claim is a no-op
    clock.advance(minutes=4)
    claimed = alice.post(f"/v1/handoffs/{hid}/claim")
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["assignee"] == "Alice"
    assert claimed.json()["claim_sla"]["state"] == "met"
    assert claimed.json()["claim_sla"]["label"] == "claimed in 4m"
    again = bob.post(f"/v1/handoffs/{hid}/claim")
    assert again.status_code == 409
    assert again.json()["detail"] == f"handoff {hid} is already claimed by Alice (0s ago)"
    assert alice.post(f"/v1/handoffs/{hid}/claim").json()["claimed_at"] == \
        claimed.json()["claimed_at"]
    assert bob.post(f"/v1/handoffs/{hid}/reply", json={"text": "Me too"}).status_code == 409

    # Alice replies (twice, with the same idempotency key): one message goes out, by the relay
    reply = alice.post(f"/v1/handoffs/{hid}/reply", json={"text": "Hi Dana, Alice here."},
                       headers={"Idempotency-Key": "r-1"})
    assert reply.status_code == 201, reply.text
    retry = alice.post(f"/v1/handoffs/{hid}/reply", json={"text": "Hi Dana, Alice here."},
                       headers={"Idempotency-Key": "r-1"})
    assert retry.json()["id"] == reply.json()["id"]
    assert reply.json()["body"]["channel"] == "web_chat"
    rows = [r for r in container.store.outbox_queue.list(limit=50)
            if r.text == "Hi Dana, Alice here."]
    assert len(rows) == 1 and rows[0].decision_id is None and rows[0].status == "pending"
    drain(worker)
    seen = container.store.outbound_since(customer_id, "web_chat", None)
    assert [(m.author, m.text) for m in seen][-1] == ("human:Alice", "Hi Dana, Alice here.")

    # the customer writes again: recorded for Alice, the bot says nothing
    sent_before = len(container.store.outbox_queue.list(limit=100))
    silent = _say(admin, "Thanks! Also, does Growth include SSO?")
    assert silent["reply"] is None
    assert any("handoff_active" in a["reason_codes"] for a in silent["actions"])
    assert len(container.store.outbox_queue.list(limit=100)) == sent_before
    view = alice.get(f"/v1/handoffs/{hid}").json()["handoff"]
    assert view["unread"] == 1
    events = alice.get(f"/v1/handoffs/{hid}").json()["events"]
    assert [e["kind"] for e in events] == ["created", "claimed", "reply", "customer_message"]
    assert events[-1]["body"]["text"] == "Thanks! Also, does Growth include SSO?"

    # a note, then the handback: the bot owns the conversation again and answers
    noted = alice.post(f"/v1/handoffs/{hid}/note", json={"text": "Wants SSO; on Growth."})
    assert noted.status_code == 201
    clock.advance(minutes=6)
    back = alice.post(f"/v1/handoffs/{hid}/return-to-bot",
                      json={"note": "Told her SSO is on Scale."})
    assert back.status_code == 200, back.text
    assert back.json()["status"] == "returned" and back.json()["resolve_sla"]["state"] == "met"
    assert container.store.get_conversation(conversation_id).owner == "bot"  # type: ignore[union-attr]
    assert alice.post(f"/v1/handoffs/{hid}/return-to-bot").status_code == 200  # the same again
    assert alice.post(f"/v1/handoffs/{hid}/resolve", json={"outcome": "resolved"}
                      ).status_code == 409
    answered = _say(admin, "What does the Pro plan cost?")
    assert answered["reply"], answered
    assert not any("handoff_active" in a["reason_codes"] for a in answered["actions"])

    metrics = alice.get("/v1/handoffs/metrics").json()
    [support] = metrics["queues"]
    assert support["queue"] == "support" and support["returned_to_bot"] == 1
    assert support["resolved_by_human"] == 0
    assert support["time_to_claim"] == {"n": 1, "median_s": 240.0, "p90_s": 240.0}
    assert support["time_to_resolve"] == {"n": 1, "median_s": 600.0, "p90_s": 600.0}
    assert support["claim_sla_met"] == 1 and support["resolve_sla_met"] == 1


def test_two_agents_claiming_at_once_one_wins(inbox: tuple[Container, str]) -> None:
    """8 rounds of Alice and Bob claiming the same handoff at the same instant (real server,
    two threads behind a barrier): each time exactly one 200 and one clear 409."""
    _, base = inbox
    admin = client(base)
    for i in range(8):
        handoff = _open_handoff(admin, web_chat_id=f"wc_race{i:04d}")
        barrier = threading.Barrier(2)
        results: dict[str, httpx.Response] = {}

        def claim(key: str, hid: str = handoff["id"], out: dict[str, httpx.Response] = results,
                  start: threading.Barrier = barrier) -> None:
            with client(base, key) as http:
                start.wait()
                out[key] = http.post(f"/v1/handoffs/{hid}/claim")

        threads = [threading.Thread(target=claim, args=(k,)) for k in ("alice-key", "bob-key")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        codes = sorted(r.status_code for r in results.values())
        assert codes == [200, 409], {k: r.text for k, r in results.items()}
        winner = next(k for k, r in results.items() if r.status_code == 200)
        loser = results["bob-key" if winner == "alice-key" else "alice-key"]
        name = "Alice" if winner == "alice-key" else "Bob"
        assert loser.json()["detail"].startswith(
            f"handoff {handoff['id']} is already claimed by {name}")
        events = admin.get(f"/v1/handoffs/{handoff['id']}").json()["events"]
        assert [e["kind"] for e in events] == ["created", "claimed"]


def test_an_sms_handoff_carries_the_web_chat_before_it(inbox: tuple[Container, str]) -> None:
    """A signed-in customer chats on the website, then complains by SMS: the handoff packet
    shows the web-chat messages, and the person's reply goes out by SMS."""
    container, base = inbox
    admin, writer, alice = client(base), client(base, "test-writer"), client(base, "alice-key")
    session = writer.post("/v1/webchat/sessions", json={
        "name": "Dana Whitfield", "signed_in": {"phone": "+1 415 555 0100"}})
    assert session.status_code == 201, session.text
    session_id = session.json()["session_id"]
    # only your backend may say who a visitor is
    assert httpx.post(f"{base}/v1/webchat/sessions",
                      json={"signed_in": {"phone": "+14155550100"}}).status_code == 401
    _say(admin, "Do you integrate with Salesforce?", who={"web_chat_id": session_id})
    _say(admin, "And how long does onboarding take?", who={"web_chat_id": session_id})
    sms = _say(admin, "This is the third time the sync broke, I want a refund. Awful service.",
               channel="sms", who={"phone": "+14155550100"})
    [view] = alice.get("/v1/handoffs", params={"status": "open"}).json()
    assert view["customer_id"] == sms["customer_id"] and view["channel"] == "sms"
    assert view["customer_name"] == "Dana Whitfield"
    packet = alice.get(f"/v1/handoffs/{view['id']}").json()
    said = [(m["channel"], m["text"]) for m in packet["messages"] if m["author"] == "customer"]
    assert said == [
        ("web_chat", "Do you integrate with Salesforce?"),
        ("web_chat", "And how long does onboarding take?"),
        ("sms", "This is the third time the sync broke, I want a refund. Awful service."),
    ]
    assert packet["profile"]["identities"] == {"phone": "+14155550100",
                                               "web_chat_id": session_id}
    assert packet["sentiment"] == "negative"
    assert alice.post(f"/v1/handoffs/{view['id']}/claim").status_code == 200
    reply = alice.post(f"/v1/handoffs/{view['id']}/reply",
                       json={"text": "Sorry Dana, I am on it now."})
    assert reply.status_code == 201 and reply.json()["body"]["channel"] == "sms"
    [row] = [r for r in container.store.outbox_queue.list(limit=50) if r.text.startswith("Sorry")]
    assert (row.channel, row.address, row.is_reply) == ("sms", "+14155550100", True)


def test_queue_scopes_and_routing_by_value(
    make_container: ContainerFactory, tmp_path: Path
) -> None:
    """A customer worth 60,000 goes to key_accounts at high priority (routing rule); an agent
    whose key covers only sales neither sees nor works it."""
    container = make_container(api_keys=KEYS)
    with running_server(container) as base:
        admin, carol, bob = client(base), client(base, "carol-key"), client(base, "bob-key")
        _say(admin, "hello", who={"email": "ceo@bigco.example"}, channel="email")
        profile = container.store.find_customer(Identity(kind="email", value="ceo@bigco.example"))
        assert profile is not None
        container.store.update_customer(profile.id, attributes={"lifetime_value": 60000})
        _say(admin, ASK_FOR_PERSON, who={"email": "ceo@bigco.example"}, channel="email")
        [view] = bob.get("/v1/handoffs").json()
        assert (view["queue"], view["priority"]) == ("key_accounts", "high")
        assert "routed:key_account" in view["routing"]
        # high priority halves the 5-minute claim SLA
        assert view["claim_sla"]["label"] == "claim in 2m"
        assert carol.get("/v1/handoffs").json() == []
        assert carol.get("/v1/handoffs", params={"queue": "key_accounts"}).status_code == 403
        denied = carol.post(f"/v1/handoffs/{view['id']}/claim")
        assert denied.status_code == 403
        assert denied.json()["detail"] == "your key does not cover the queue 'key_accounts'"
        assert client(base, "reader-key").get("/v1/handoffs").status_code == 403
        assert client(base, None).get("/v1/handoffs").status_code == 401
        assert bob.post("/v1/handoffs/hof_nope/claim").status_code == 404


def test_state_rules_and_bad_input(inbox: tuple[Container, str]) -> None:
    _, base = inbox
    admin, alice, bob = client(base), client(base, "alice-key"), client(base, "bob-key")
    hid = _open_handoff(admin)["id"]
    early = alice.post(f"/v1/handoffs/{hid}/resolve", json={"outcome": "resolved"})
    assert (early.status_code, early.json()["detail"]) == (
        409, f"handoff {hid} is not claimed yet: claim it first")
    assert alice.post(f"/v1/handoffs/{hid}/reply", json={"text": "hi"}).json()["detail"] == \
        f"handoff {hid} is not claimed yet: claim it before you reply"
    assert alice.post(f"/v1/handoffs/{hid}/claim").status_code == 200
    bad = alice.post(f"/v1/handoffs/{hid}/resolve", json={"outcome": "won_lottery"})
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith("unknown outcome 'won_lottery'; one of: resolved")
    assert alice.post(f"/v1/handoffs/{hid}/reply", json={"text": ""}).status_code == 422
    assert alice.post(f"/v1/handoffs/{hid}/reply", json={}).status_code == 422
    assert alice.post(f"/v1/handoffs/{hid}/reply", content=b"{not json").status_code == 422
    assert bob.post(f"/v1/handoffs/{hid}/resolve", json={"outcome": "resolved"}
                    ).status_code == 409
    done = alice.post(f"/v1/handoffs/{hid}/resolve",
                      json={"outcome": "sale", "note": "Upgraded to Scale."})
    assert done.status_code == 200 and done.json()["outcome"] == "sale"
    assert alice.post(f"/v1/handoffs/{hid}/resolve", json={"outcome": "sale"}
                      ).status_code == 200  # the same change again
    assert alice.post(f"/v1/handoffs/{hid}/resolve", json={"outcome": "refund"}
                      ).status_code == 409
    assert bob.post(f"/v1/handoffs/{hid}/claim").json()["detail"] == \
        f"handoff {hid} is already resolved by Alice"
    assert alice.post(f"/v1/handoffs/{hid}/reply", json={"text": "one more"}).status_code == 409
    # a note after the fact is fine
    assert alice.post(f"/v1/handoffs/{hid}/note", json={"text": "Follow up in May"}
                      ).status_code == 201
    assert [e["kind"] for e in alice.get(f"/v1/handoffs/{hid}").json()["events"]] == [
        "created", "claimed", "note", "resolved", "note"]
    metrics = alice.get("/v1/handoffs/metrics").json()["total"]
    assert metrics["resolved_by_human"] == 1 and metrics["outcomes"] == {"sale": 1}


def test_the_policy_still_decides_a_persons_reply(inbox: tuple[Container, str]) -> None:
    """A person's reply passes the policy in code: not after an SMS opt-out, not with a
    forbidden claim; the refusal says why and nothing is queued."""
    container, base = inbox
    admin, alice = client(base), client(base, "alice-key")
    who = {"phone": "+14155550111"}
    _say(admin, "I want to speak to a human", channel="sms", who=who)
    [view] = alice.get("/v1/handoffs", params={"status": "open"}).json()
    hid = view["id"]
    assert alice.post(f"/v1/handoffs/{hid}/claim").status_code == 200
    before = len(container.store.outbox_queue.list(limit=100))
    promise = alice.post(f"/v1/handoffs/{hid}/reply",
                         json={"text": "We guarantee 100% uptime, always."})
    assert promise.status_code == 422
    assert "guarantee" in promise.json()["detail"]
    _say(admin, "STOP", channel="sms", who=who)
    stopped = alice.post(f"/v1/handoffs/{hid}/reply", json={"text": "Are you still there?"})
    assert stopped.status_code == 422
    assert "consent_revoked" in stopped.json()["detail"]
    after = [r for r in container.store.outbox_queue.list(limit=100)]
    assert len(after) == before + 1  # only the opt-out confirmation the bot sent


def test_handoff_events_are_mirrored_by_signed_webhooks(
    make_container: ContainerFactory, clock: FixedClock
) -> None:
    """Every event reaches the helpdesk once, signed; a receiver error is retried."""
    with WebhookReceiver(secret="hd-secret", now=lambda: clock.now().timestamp()) as helpdesk:
        container = make_container(api_keys=KEYS,
                                   handoff_webhook_url=f"{helpdesk.base_url}/hooks/handoffs",
                                   handoff_webhook_secret="hd-secret")
        worker = one_worker(container)
        with running_server(container) as base:
            admin, alice = client(base), client(base, "alice-key")
            hid = _open_handoff(admin)["id"]
            helpdesk.down = True
            alice.post(f"/v1/handoffs/{hid}/claim")
            drain(worker)  # the receiver is down: both deliveries wait for a retry
            assert helpdesk.received == []
            helpdesk.down = False
            clock.advance(minutes=10)
            alice.post(f"/v1/handoffs/{hid}/reply", json={"text": "Hello from Alice"})
            _say(admin, "Great, thanks")
            alice.post(f"/v1/handoffs/{hid}/resolve", json={"outcome": "resolved"})
            drain(worker)
    kinds = [r["json"]["type"] for r in helpdesk.received]
    assert sorted(kinds) == sorted(["handoff.created", "handoff.claimed", "handoff.reply",
                                    "handoff.customer_message", "handoff.resolved"])
    first = next(r for r in helpdesk.received if r["json"]["type"] == "handoff.created")
    assert first["json"]["handoff"]["id"] == hid
    assert first["headers"]["x-journey-event"] == "handoff.created"
    assert first["headers"]["idempotency-key"] == first["json"]["id"]
    reply = next(r for r in helpdesk.received if r["json"]["type"] == "handoff.reply")
    assert reply["json"]["event"]["body"]["text"] == "Hello from Alice"
    assert reply["json"]["event"]["actor"] == "Alice"
    # a wrong secret does not verify (the receiver only recorded verified requests)
    raw = b'{"id":"x"}'
    assert not verify_webhook("other", reply["headers"]["x-journey-signature"], raw,
                              clock.now().timestamp())
    jobs = container.store.jobs.list(kind="webhook")
    assert {j.status for j in jobs} == {"done"} and len(jobs) == 5
    assert max(j.attempts for j in jobs) >= 2  # the two sent while the receiver was down


def test_the_bot_resumes_with_the_notes_and_does_not_repeat_the_person(
    make_container: ContainerFactory
) -> None:
    """After the handback the model sees the person's notes and replies in its prompt; a reply
    that repeats what the person said is stopped by the gate (``repeats_human``)."""
    said = "Your refund of 40 dollars was approved today and will arrive within 5 days."
    model = ScriptedModel(
        content(decision(intent="human_request", reply="Let me get a colleague for you.",
                         actions=[{"tool": "escalate_to_human", "queue": "support",
                                   "reason": "asked for a person", "summary": "wants a human",
                                   "priority": "normal"}])),
        content(decision(intent="billing", reply=said.replace("today", "today,"))),
        content(decision(intent="billing", reply="Is there anything else I can help with?")),
    )
    container = make_container(brain="openai", llm_http_client=model.client(), api_keys=KEYS)
    with running_server(container) as base:
        admin, alice = client(base), client(base, "alice-key")
        hid = _open_handoff(admin)["id"]
        alice.post(f"/v1/handoffs/{hid}/claim")
        assert alice.post(f"/v1/handoffs/{hid}/reply", json={"text": said}).status_code == 201
        # while Alice owns it, no model call is spent on the customer's messages
        calls = len(model.requests)
        _say(admin, "ok")
        assert len(model.requests) == calls
        alice.post(f"/v1/handoffs/{hid}/return-to-bot", json={"note": "Refund done; be kind."})
        repeated = _say(admin, "So when does my refund arrive?")
        prompt = model.requests[-1]["messages"][-1]["content"]
        assert "Alice returned the conversation to you" in prompt
        assert "note: Refund done; be kind." in prompt
        assert f"they told the customer: {said}" in prompt
        assert repeated["reply"] is None
        [send] = [a for a in repeated["actions"] if a["tool"] == "send_message"]
        assert send["outcome"] == "deny" and send["reason_codes"] == ["repeats_human"]
        fresh = _say(admin, "Thanks")
        assert fresh["reply"] == "Is there anything else I can help with?"


def test_sla_timers_breach_once(inbox: tuple[Container, str], clock: FixedClock) -> None:
    """Unclaimed past its claim SLA: the badge says so and the worker records one
    ``sla_breached`` event per timer, however often it looks."""
    container, base = inbox
    admin, alice = client(base), client(base, "alice-key")
    hid = _open_handoff(admin)["id"]
    clock.advance(minutes=8)
    assert alice.get("/v1/handoffs").json()[0]["claim_sla"]["state"] == "due_soon"
    clock.advance(minutes=3)
    view = alice.get("/v1/handoffs").json()[0]
    assert (view["claim_sla"]["state"], view["claim_sla"]["label"]) == (
        "breached", "claim overdue 1m")
    workers = container.make_workers(2, prefix="sla").workers
    for worker in workers * 2:
        worker.run_once()
    events = alice.get(f"/v1/handoffs/{hid}").json()["events"]
    breaches = [e["body"] for e in events if e["kind"] == "sla_breached"]
    assert breaches == [{"timer": "claim", "due_at": "2026-11-03T15:10:00+00:00",
                         "queue": "support", "priority": "normal", "assignee": None}]
    assert alice.get("/v1/handoffs/metrics").json()["total"]["breached_now"] == 1
    alice.post(f"/v1/handoffs/{hid}/claim")
    view = alice.get(f"/v1/handoffs/{hid}").json()["handoff"]
    assert (view["claim_sla"]["state"], view["claim_sla"]["label"]) == ("missed", "claimed in 11m")
