"""Transactional messages through the real server (``POST /v1/notifications``), on SQLite and
PostgreSQL: a customer created with ``PUT /v1/customers``, a templated message decided by the
policy gate, recorded as a decision, queued in the outbox and delivered by the relay to a real
SMTP server (aiosmtpd); idempotency keys, bad input naming its field, consent, quiet hours as
the policy says, and a card number in a variable masked everywhere."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from core.clock import FixedClock
from journey.runtime import Container
from memory import db
from memory.notifications import notifications
from policy.loader import default_policy_path
from tests.channels.conftest import SmtpServer
from tests.conftest import ContainerFactory
from tests.server import client, drain, free_port, one_worker, running_server

SHIPPED = {"order_id": "A-10042", "carrier": "UPS", "delivery_date": "2026-11-05",
           "tracking_url": "https://track.example/A-10042"}
SHIPPED_TEXT = ("Hi Dana, your order A-10042 has shipped with UPS and should arrive by "
                "2026-11-05. Track it here: https://track.example/A-10042")
DROP = object()  # a field the request leaves out
KEYS = {
    "test-admin": ["admin"],
    "shop": {"name": "shop-backend", "scopes": ["notifications:write", "customers:write"]},
    "reader": ["notifications:read", "conversations:read"],
    "test-writer": ["messages:write"],
}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on a loopback port."""
    server = SmtpServer("127.0.0.1", free_port())
    controller = Controller(server, hostname=server.host, port=server.port)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@dataclass
class Served:
    container: Container
    api: httpx.Client
    smtp: SmtpServer

    def customer(self, **overrides: Any) -> dict[str, Any]:
        """Dana, created with ``PUT /v1/customers``: email marketing granted, prefers email."""
        body = {
            "identities": {"email": "dana@example.com", "phone": "+1 415 555 0100",
                           "external_id": "shop-42"},
            "name": "Dana Reyes", "timezone": "America/New_York", "channel_preference": "email",
            "consent": {"email": {"marketing": {"status": "granted", "source": "signup-form",
                                                "at": "2026-11-01T10:00:00Z"}}},
            **overrides,
        }
        done = self.api.put("/v1/customers", json=body)
        assert done.status_code in (200, 201), done.text
        profile: dict[str, Any] = done.json()
        return profile

    def notify(self, **body: Any) -> httpx.Response:
        payload = {"template": "order_shipped", "customer": {"email": "dana@example.com"},
                   "variables": SHIPPED, **body}
        return self.api.post("/v1/notifications", json=payload)

    def outbox(self) -> list[dict[str, Any]]:
        return self.container.store.outbox()

    def emails(self) -> list[EmailMessage]:
        found = []
        for envelope in self.smtp.envelopes:
            raw = envelope.original_content or envelope.content
            assert isinstance(raw, bytes)
            message = message_from_bytes(raw, policy=email_policy.default)
            assert isinstance(message, EmailMessage)
            found.append(message)
        return found


@contextmanager
def _serve(make_container: ContainerFactory, smtp: SmtpServer, **settings: Any
           ) -> Iterator[Served]:
    container = make_container(api_keys=KEYS, smtp_host=smtp.host, smtp_port=smtp.port,
                               email_from="Acme <orders@acme.example>", **settings)
    with running_server(container) as base, client(base, key="shop") as api:
        yield Served(container, api, smtp)


@pytest.fixture
def served(make_container: ContainerFactory, smtp: SmtpServer) -> Iterator[Served]:
    with _serve(make_container, smtp) as done:
        yield done


def _body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return " ".join(str(part.get_content()).split())


def test_an_order_shipped_email_is_decided_recorded_and_delivered_by_the_relay(
    served: Served,
) -> None:
    profile = served.customer()
    sent = served.notify(idempotency_key="shipped-A-10042")
    assert sent.status_code == 202, sent.text
    answer = sent.json()
    assert answer["status"] == "queued"
    assert (answer["template"], answer["purpose"], answer["channel"]) == (
        "order_shipped", "transactional", "email")
    assert answer["customer_id"] == profile["id"]
    assert answer["reason_codes"] == ["allowed"]
    assert answer["replayed"] is False

    # recorded as a decision, with its reasons, in the audit trail
    reader = client(str(served.api.base_url), key="reader")
    listed = reader.get("/v1/decisions", params={"reason": "notification:order_shipped"})
    assert listed.status_code == 200, listed.text
    decisions = listed.json()["decisions"]
    assert [d["id"] for d in decisions] == [answer["decision_id"]]
    decision = decisions[0]
    assert decision["customer_id"] == profile["id"]
    assert decision["trigger"]["notification"] == answer["id"]
    assert decision["verdicts"][0]["outcome"] == "allow"
    assert decision["verdicts"][0]["result"]["outbox_id"] == answer["outbox_id"]
    assert decision["inputs"]["origin"] == "system"
    assert decision["proposed"][0] == {"tool": "send_message", "channel": "email",
                                       "text": SHIPPED_TEXT, "purpose": "transactional"}

    # one outbox row with the rendered text, delivered by the relay over SMTP
    rows = served.outbox()
    assert [(r["id"], r["status"], r["channel"], r["address"], r["purpose"], r["text"])
            for r in rows] == [(answer["outbox_id"], "pending", "email", "dana@example.com",
                                "transactional", SHIPPED_TEXT)]
    assert served.smtp.envelopes == []
    assert drain(one_worker(served.container)) >= 1
    [email] = served.emails()
    assert email["To"] == "dana@example.com"
    assert email["Subject"] == "Your order A-10042 is on its way"
    assert _body(email).startswith(SHIPPED_TEXT)

    seen = reader.get(f"/v1/notifications/{answer['id']}")
    assert seen.status_code == 200, seen.text
    view = seen.json()
    assert view["delivery"]["status"] == "sent"
    assert view["delivery"]["provider_message_id"] == email["Message-ID"]
    assert view["delivery"]["text"] == SHIPPED_TEXT
    assert {k: view[k] for k in answer} == answer
    assert reader.get("/v1/notifications/ntf_nope").status_code == 404
    # the notification is part of the customer's conversation
    transcript = served.container.store.messages(conversation_id=decision["conversation_id"])
    assert [(m.direction, m.text) for m in transcript] == [("outbound", SHIPPED_TEXT)]


def test_an_idempotency_key_sends_once_and_another_body_under_it_is_a_conflict(
    served: Served,
) -> None:
    served.customer()
    first = served.notify(idempotency_key="shipped-A-10042")
    assert first.status_code == 202, first.text
    again = served.notify(idempotency_key="shipped-A-10042")
    assert again.status_code == 202, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert {**again.json(), "replayed": False} == first.json()
    # the same key in the header is the same request
    payload = {"template": "order_shipped", "customer": {"email": "dana@example.com"},
               "variables": SHIPPED}
    header = served.api.post("/v1/notifications", json=payload,
                             headers={"Idempotency-Key": "shipped-A-10042"})
    assert header.status_code == 202, header.text
    assert header.json()["id"] == first.json()["id"]

    other = served.notify(idempotency_key="shipped-A-10042",
                          variables={**SHIPPED, "carrier": "DHL"})
    assert other.status_code == 409, other.text
    assert "shipped-A-10042" in other.json()["detail"]
    both = served.api.post("/v1/notifications", json={**payload, "idempotency_key": "a"},
                           headers={"Idempotency-Key": "b"})
    assert both.status_code == 422
    assert both.json()["detail"].startswith("idempotency_key:")

    assert len(served.outbox()) == 1
    assert served.container.store.counts()["decisions"] == 1
    drain(one_worker(served.container))
    assert len(served.emails()) == 1
    # without a key each request is a notification of its own
    assert served.notify().json()["id"] != served.notify().json()["id"]
    assert len(served.outbox()) == 3


@pytest.mark.parametrize(("body", "status", "names"), [
    ({"variables": {k: v for k, v in SHIPPED.items() if k != "tracking_url"}}, 422,
     "variables.tracking_url: required by template order_shipped"),
    ({"variables": {**SHIPPED, "delivery_date": "soon"}}, 422, "variables.delivery_date:"),
    ({"variables": {**SHIPPED, "tracking_url": "javascript:alert(1)"}}, 422,
     "variables.tracking_url: must be an http or https URL"),
    ({"variables": {**SHIPPED, "coupon": "X"}}, 422,
     "variables.coupon: not a variable of template order_shipped"),
    ({"template": "order_shiped"}, 422, "template: no template 'order_shiped'"),
    ({"channel": "web_chat"}, 422, "channel: template order_shipped is sent on email, sms"),
    ({"channel": "fax"}, 422, "channel:"),
    ({"customer": {"email": "nobody@example.com"}}, 404,
     "customer: no customer with email nobody@example.com"),
    ({"customer_id": "cus_nope", "customer": DROP}, 404, "customer_id: no customer 'cus_nope'"),
    ({"customer_id": "cus_x"}, 422, "give exactly one of customer_id or customer"),
    ({"customer": {"email": "x@@y"}}, 422, "customer.email:"),
])
def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(
    served: Served, body: dict[str, Any], status: int, names: str,
) -> None:
    served.customer()
    payload = {"template": "order_shipped", "customer": {"email": "dana@example.com"},
               "variables": SHIPPED, "idempotency_key": "k-1", **body}
    refused = served.api.post("/v1/notifications",
                              json={k: v for k, v in payload.items() if v is not DROP})
    assert refused.status_code == status, refused.text
    assert names in refused.json()["detail"]
    assert served.outbox() == []
    assert served.container.store.counts()["decisions"] == 0
    with served.container.engine.connect() as conn:
        assert conn.execute(select(notifications)).all() == []
    # a refused request does not use up its key
    assert served.notify(idempotency_key="k-1").status_code == 202


def test_the_scope_notifications_write_is_needed(served: Served) -> None:
    served.customer()
    base = str(served.api.base_url)
    writer = client(base, key="test-writer").post("/v1/notifications", json={
        "template": "order_shipped", "customer": {"email": "dana@example.com"},
        "variables": SHIPPED})
    assert writer.status_code == 403
    assert "notifications:write" in writer.json()["detail"]
    assert client(base, key="reader").post("/v1/notifications", json={}).status_code == 403
    assert client(base, key=None).get("/v1/notifications/ntf_1").status_code == 401


def test_a_channel_without_service_consent_or_address_is_suppressed_and_nothing_queued(
    served: Served,
) -> None:
    profile = served.customer(consent={"sms": {"service": {
        "status": "revoked", "source": "support-call", "evidence": "ticket 881"}}})
    revoked = served.notify(channel="sms", idempotency_key="sms-1")
    assert revoked.status_code == 200, revoked.text
    answer = revoked.json()
    assert answer["status"] == "suppressed"
    assert answer["reason_codes"] == ["consent_revoked"]
    assert answer["detail"] == "the customer opted out of transactional on sms"
    assert answer["outbox_id"] is None
    assert served.outbox() == []
    reader = client(str(served.api.base_url), key="reader")
    found = reader.get("/v1/decisions", params={"reason": "send_message:consent_revoked"})
    assert [d["id"] for d in found.json()["decisions"]] == [answer["decision_id"]]
    assert found.json()["decisions"][0]["verdicts"][0]["outcome"] == "deny"
    # a repeat is the same answer, still nothing queued
    assert served.notify(channel="sms", idempotency_key="sms-1").json()["id"] == answer["id"]
    assert served.outbox() == []

    # no channel named: the policy moves it to a channel the template allows
    served.customer(channel_preference="sms")
    moved = served.notify(idempotency_key="sms-2")
    assert moved.status_code == 202, moved.text
    assert moved.json()["channel"] == "email"
    assert moved.json()["reason_codes"][:2] == ["consent_revoked", "switched_channel"]
    assert [r["channel"] for r in served.outbox()] == ["email"]

    # a customer without a phone number cannot get an SMS
    other = served.api.put("/v1/customers", json={"identities": {"email": "lee@example.com"}})
    assert other.status_code == 201
    none = served.notify(customer={"email": "lee@example.com"}, channel="sms")
    assert none.status_code == 200, none.text
    assert (none.json()["status"], none.json()["reason_codes"]) == ("suppressed",
                                                                     ["no_identity"])
    assert len(served.outbox()) == 1
    assert profile["id"] != none.json()["customer_id"]


def test_the_relay_checks_the_policy_again_before_it_sends(served: Served) -> None:
    served.customer()
    sent = served.notify(idempotency_key="shipped-late")
    assert sent.json()["status"] == "queued", sent.text
    # the customer withdraws service consent on email before the relay gets to it
    served.customer(consent={"email": {"service": {"status": "revoked", "source": "preferences"}}})
    drain(one_worker(served.container))
    assert served.emails() == []
    seen = client(str(served.api.base_url), key="reader").get(
        f"/v1/notifications/{sent.json()['id']}").json()
    assert seen["status"] == "queued"  # the decision as it was made
    assert seen["delivery"]["status"] == "cancelled"
    assert seen["delivery"]["last_error"].startswith("consent_revoked")


def _policy_holding_service_at_night(tmp_path: Path) -> Path:
    """The default policy, with quiet hours holding service messages too."""
    text = default_policy_path().read_text(encoding="utf-8")
    old = "    purposes: [marketing]\n    default_timezone"
    assert text.count(old) == 1
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace(old, "    purposes: [marketing, service]\n    default_timezone"),
                    encoding="utf-8")
    return path


def test_quiet_hours_hold_what_the_policy_lists_not_a_transactional_message(
    make_container: ContainerFactory, smtp: SmtpServer, clock: FixedClock, tmp_path: Path,
) -> None:
    with _serve(make_container, smtp,
                policy_path=_policy_holding_service_at_night(tmp_path)) as served:
        _quiet_hours(served, clock)


def _quiet_hours(served: Served, clock: FixedClock) -> None:
    # a proactive service message needs consent given (the policy: service is ``reply``)
    granted = {"status": "granted", "source": "signup-form", "at": "2026-11-01T10:00:00Z"}
    profile = served.customer(consent={"email": {"marketing": granted, "service": granted}})
    night = clock.advance(hours=12, minutes=30)  # 22:30 in New York (EST)
    assert night.isoformat() == "2026-11-04T03:30:00+00:00"
    shipped = served.notify(idempotency_key="night-1")
    assert shipped.status_code == 202, shipped.text
    assert shipped.json()["status"] == "queued"
    assert shipped.json()["deliver_at"] is None

    # a service template at the same time: this policy holds service at night
    reminder = served.notify(template="appointment_reminder", channel="email", variables={
        "what": "onboarding call", "when": "Thursday 10:00"}, idempotency_key="night-2")
    assert reminder.status_code == 202, reminder.text
    assert reminder.json()["status"] == "scheduled"
    assert reminder.json()["reason_codes"] == ["quiet_hours_deferred"]
    assert reminder.json()["deliver_at"] == "2026-11-04T13:00:00Z"

    # and a marketing journey at the same time (a content download: the nurture email)
    fired = served.container.signals
    assert fired is not None
    result = fired.ingest([{"id": "ev-1", "type": "content_download",
                            "customer": {"email": "dana@example.com"}}])
    assert result.results[0].fired == ["whitepaper_nurture"]
    clock.advance(minutes=30)  # the journey's delay: 23:00 in New York
    drain(one_worker(served.container))
    marketing = [d for d in served.container.store.decisions(customer_id=profile["id"])
                 if (d.trigger or {}).get("journey") == "whitepaper_nurture"]
    assert [v.reason_codes for v in marketing[0].verdicts] == [["quiet_hours_deferred"]]
    rows = {r["purpose"]: r for r in served.outbox()}
    assert rows["marketing"]["status"] == "scheduled"
    assert rows["service"]["status"] == "scheduled"
    assert rows["transactional"]["status"] == "sent"
    assert [e["Subject"] for e in served.emails()] == ["Your order A-10042 is on its way"]


def test_a_card_number_in_a_variable_is_masked_everywhere(served: Served) -> None:
    served.customer()
    hostile = {**SHIPPED, "carrier": "UPS (paid with 4111 1111 1111 1111)"}
    sent = served.notify(variables=hostile, idempotency_key="card-1")
    assert sent.status_code == 202, sent.text
    masked = ("Hi Dana, your order A-10042 has shipped with UPS (paid with [card ending "
              "1111]) and should arrive by 2026-11-05.")
    [row] = served.outbox()
    assert row["text"].startswith(masked)
    drain(one_worker(served.container))
    [email] = served.emails()
    assert _body(email).startswith(masked)
    # the same hostile body under the same key is the same request (nothing new)
    assert served.notify(variables=hostile, idempotency_key="card-1").json()["id"] == \
        sent.json()["id"]
    with served.container.engine.connect() as conn:
        stored = "\n".join(repr(tuple(r)) for table in db.metadata.sorted_tables
                           for r in conn.execute(select(table)))
    assert "[card ending 1111]" in stored
    for form in ("4111 1111 1111 1111", "4111111111111111"):
        assert form not in stored
        assert form not in str(email)


def test_an_open_handoff_silences_the_bot_but_not_a_password_reset(served: Served) -> None:
    served.customer()
    writer = client(str(served.api.base_url), key="test-writer")
    asked = writer.post("/v1/messages", json={
        "channel": "email", "customer": {"email": "dana@example.com"},
        "text": "Can I talk to a person please?"})
    assert asked.status_code == 200, asked.text
    assert served.container.store.handoffs(served.customer()["id"]), "no handoff was opened"
    reset = served.notify(template="password_reset", idempotency_key="reset-1", variables={
        "reset_url": "https://acme.example/reset/t0k3n", "expires_in_minutes": 30})
    nurture = served.notify(template="appointment_reminder", idempotency_key="remind-1",
                            variables={"what": "onboarding call", "when": "Thursday 10:00"})
    assert reset.status_code == 202 and reset.json()["status"] == "queued", reset.text
    # a service message is the bot speaking in the conversation a person now owns
    assert nurture.json()["status"] == "suppressed"
    assert "handoff_active" in nurture.json()["reason_codes"]
    drain(one_worker(served.container))  # the relay checks the handoff again: still sent
    assert any("acme.example/reset/t0k3n" in _body(m) for m in served.emails())
