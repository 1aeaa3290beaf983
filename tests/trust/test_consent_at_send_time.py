"""Promise: nothing reaches a customer through a channel they opted out of, whenever it was
queued — the one opt-out confirmation excepted — and nothing marketing goes out at night.

Every delivery is checked again by the policy when the relay is about to send it, against the
profile as it is then: a bot reply queued before STOP and retried or replayed from the
dead-letter queue, a person's reply from the inbox, a message approved earlier.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.clock import FixedClock
from core.domain import Identity
from memory import db
from tests.providers import FakeTwilio
from tests.server import client, drain, one_worker
from tests.trust.conftest import TWILIO_INBOUND, ServeFactory, twilio_settings

PHONE = "+14155550123"


def _travel(clock: FixedClock, to: datetime) -> None:
    clock.advance(seconds=(to - clock.now()).total_seconds())


def _confirmation(served_policy: object) -> str:
    return served_policy.contact.consent.opt_out_confirmation  # type: ignore[attr-defined]


def test_a_reply_dead_lettered_before_stop_is_not_sent_when_replayed(
    serve: ServeFactory, twilio: FakeTwilio
) -> None:
    served = serve(**twilio_settings(twilio, outbox_max_attempts=1))
    container = served.container
    worker = one_worker(container)
    url = served.base + TWILIO_INBOUND
    twilio.fail_rate = 1.0  # the provider answers 500 to everything
    assert twilio.send_inbound(url, PHONE, "What plans do you offer?", sid="SMq1").status_code \
        == 200
    drain(worker)
    assert twilio.send_inbound(url, PHONE, "STOP", sid="SMq2").status_code == 200
    drain(worker)
    dead = container.store.outbox_queue.list(status="dead")
    assert [r.purpose for r in dead] == ["service", "transactional"]
    assert twilio.messages == []

    twilio.fail_rate = 0.0  # the provider recovers; an operator replays the dead letters
    with client(served.base) as api:
        replayed = api.post("/v1/outbox/replay", json={})
    assert replayed.status_code == 200 and replayed.json() == {"replayed": 2}
    drain(worker)

    confirmation = _confirmation(container.policy.get())
    assert [m["body"] for m in twilio.messages] == [confirmation]
    reply, confirm = container.store.outbox_queue.list()
    assert (confirm.status, confirm.text) == ("sent", confirmation)
    assert reply.status == "cancelled"
    assert (reply.last_error or "").startswith("consent_revoked")


def test_the_reply_to_hi_is_not_sent_after_the_unsubscribe_that_followed_it(
    serve: ServeFactory, twilio: FakeTwilio
) -> None:
    served = serve(**twilio_settings(twilio))
    container = served.container
    url = served.base + TWILIO_INBOUND
    for sid, text in (("SMa", "hi"), ("SMb", "UNSUBSCRIBE"), ("SMc", "any news?")):
        assert twilio.send_inbound(url, PHONE, text, sid=sid).status_code == 200
    drain(one_worker(container))  # the three turns, then the relay

    confirmation = _confirmation(container.policy.get())
    assert [m["body"] for m in twilio.messages] == [confirmation]
    rows = container.store.outbox_queue.list()
    cancelled = [r for r in rows if r.status == "cancelled"]
    assert len(cancelled) == 1 and (cancelled[0].last_error or "").startswith("consent_revoked")
    # the third message was answered by nobody: the policy denied it at decision time
    decisions = container.store.decisions()
    assert any("send_message:consent_revoked" in d.reasons for d in decisions)


def test_a_persons_reply_queued_before_stop_is_not_delivered(
    serve: ServeFactory, twilio: FakeTwilio
) -> None:
    served = serve(**twilio_settings(twilio, api_keys={
        "test-admin": ["admin"], "agent-key": {"name": "Alice", "scopes": ["inbox"]}}))
    container = served.container
    worker = one_worker(container)
    url = served.base + TWILIO_INBOUND
    assert twilio.send_inbound(url, PHONE, "I want to talk to a real person please",
                               sid="SMh1").status_code == 200
    drain(worker)
    (handoff,) = container.store.handoffs()
    sent_before = len(twilio.messages)  # the acknowledgement
    with client(served.base, "agent-key") as agent:
        assert agent.post(f"/v1/handoffs/{handoff.id}/claim").status_code == 200
        reply = agent.post(f"/v1/handoffs/{handoff.id}/reply",
                           json={"text": "Hi, Alice here. How can I help?"})
        assert reply.status_code == 201, reply.text
    # the customer opts out before the relay ran
    assert twilio.send_inbound(url, PHONE, "STOP", sid="SMh2").status_code == 200
    drain(worker)

    confirmation = _confirmation(container.policy.get())
    assert [m["body"] for m in twilio.messages[sent_before:]] == [confirmation]
    person = next(r for r in container.store.outbox_queue.list()
                  if (r.meta or {}).get("author") == "Alice")
    assert person.status == "cancelled"
    assert (person.last_error or "").startswith("consent_revoked")


def test_marketing_replayed_at_night_waits_for_the_morning(
    serve: ServeFactory, clock: FixedClock
) -> None:
    served = serve()
    container = served.container
    store = container.store
    profile = store.create_customer(
        [Identity(kind="email", value="nia@example.com")], "consideration",
        timezone="America/New_York",
        consent={"email": {"service": "granted", "marketing": "granted"}},
    )
    # a promotional email that failed in the afternoon and went to the dead-letter queue
    conversation = store.open_conversation(profile.id)
    message = store.accept_inbound(conversation, "email", "hello", "e-1").message
    with store.engine.begin() as conn:
        conn.execute(db.messages.insert().values(
            id="msg_promo", conversation_id=conversation.id, customer_id=profile.id,
            direction="outbound", channel="email", text="Our autumn offer is here.",
            author="bot", created_at=clock.now()))
        conn.execute(db.outbox.insert().values(
            id="out_promo", decision_id=None, message_id="msg_promo", customer_id=profile.id,
            channel="email", address="nia@example.com", text="Our autumn offer is here.",
            purpose="marketing", status="dead", attempts=8, created_at=clock.now(),
            idempotency_key="promo-1", is_reply=False, last_error="transient: timeout"))
    assert message.id
    # replayed at 22:30 in New York
    _travel(clock, datetime(2026, 11, 4, 3, 30, tzinfo=UTC))
    with client(served.base) as api:
        assert api.post("/v1/outbox/replay", json={"ids": ["out_promo"]}).json() == {
            "replayed": 1}
    drain(one_worker(container))

    row = store.outbox_queue.get("out_promo")
    assert row is not None and row.status in ("pending", "scheduled")
    morning = datetime(2026, 11, 4, 13, 0, tzinfo=UTC)  # 08:00 in New York
    assert row.next_attempt_at == morning
    assert not (container.settings.data_dir / "outbox" / "email.jsonl").exists()
    _travel(clock, morning + timedelta(minutes=1))
    drain(one_worker(container))
    sent = store.outbox_queue.get("out_promo")
    assert sent is not None and sent.status == "sent"
