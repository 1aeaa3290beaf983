"""Journeys end to end: signals posted to the real HTTP API, the worker as `journey serve` runs
it, the real SMTP adapter delivering to a real local SMTP server (aiosmtpd). The clock is the
test's, so a 30-minute delay takes no time."""

from __future__ import annotations

import email
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message as EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from core.clock import FixedClock
from core.domain import Identity
from journey.runtime import Container
from policy.journeys import JourneysError, JourneysProvider, parse_journeys
from tests.conftest import ContainerFactory
from tests.server import client, drain, free_port, one_worker, running_server


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def _events(http: Any, *events: dict[str, Any]) -> dict[str, Any]:
    response = http.post("/v1/events", json={"events": list(events)})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _ev(eid: str, etype: str, at: datetime, who: dict[str, str], **props: Any) -> dict[str, Any]:
    return {"id": eid, "type": etype, "customer": who, "properties": props,
            "occurred_at": at.isoformat()}


DANA = {"email": "dana@example.com"}


def _dana(container: Container, **consent: Any) -> str:
    profile = container.store.create_customer(
        [Identity(kind="email", value="dana@example.com"),
         Identity(kind="phone", value="+14155550100")],
        "awareness", name="Dana Reyes", timezone="America/New_York",
        consent=consent or {"email": {"service": "granted", "marketing": "granted"}},
    )
    return profile.id


def test_pricing_surge_cancels_the_generic_nurture_and_alerts_sales(
    make_container: ContainerFactory, clock: FixedClock, smtp: tuple[Inbox, int]
) -> None:
    """The seed scenario: a whitepaper at 10:00, three pricing views at 10:15, and the
    nurture email that was due at 10:30 is not sent; sales gets the context instead."""
    inbox, port = smtp  # the test clock starts at 15:00 UTC: 10:00 in New York
    container = make_container(smtp_host="127.0.0.1", smtp_port=port)
    cid = _dana(container)
    worker = one_worker(container)
    start = clock.now()
    with running_server(container) as base, client(base) as http:
        fired = _events(http, _ev("dl1", "content_download", start, DANA, asset="whitepaper"))
        assert fired["results"][0]["fired"] == ["whitepaper_nurture"]
        assert drain(worker) == 0  # the nurture is due at 10:30, not now
        clock.advance(minutes=15)
        results = _events(http, *[
            _ev(f"pv{i}", "page_view", clock.now() + timedelta(seconds=20 * i), DANA,
                page="pricing") for i in range(3)
        ])["results"]
        clock.advance(minutes=1)
        assert [r["fired"] for r in results] == [[], [], ["pricing_surge"]]
        assert results[2]["stage"] == "decision"
        drain(worker)
        clock.advance(minutes=20)  # 10:36: past the nurture's due time
        drain(worker)
        view = http.get(f"/v1/customers/{cid}").json()
    jobs = {j["journey"]: j for j in view["jobs"]}
    assert jobs["whitepaper_nurture"]["status"] == "cancelled"
    assert jobs["whitepaper_nurture"]["error"].startswith("replaced: journey pricing_surge")
    assert jobs["pricing_surge"]["status"] == "done"
    # no nurture email went out, to the SMTP server or anywhere
    assert inbox.messages == []
    assert view["outbox"] == []
    # sales has the handoff, high priority, with the context of the signals
    (handoff,) = view["handoffs"]
    assert (handoff["queue"], handoff["priority"], handoff["status"]) == ("sales", "high", "open")
    assert "3 times in 30 minutes" in handoff["reason"]
    assert "page_view pricing" in handoff["summary"]
    assert view["profile"]["lifecycle_stage"] == "decision"
    assert any(a["kind"] == "task" and "pricing" in a["body"]["text"]
               for a in view["crm_activities"])
    (decision,) = container.store.decisions(customer_id=cid)
    assert decision.inbound_message_id is None and decision.job_id == jobs["pricing_surge"]["id"]
    assert "journey:pricing_surge" in decision.reasons
    assert f"cancelled_job:{jobs['whitepaper_nurture']['id']}" in decision.reasons
    # the sales alert went through the gate like any action
    assert [v.tool for v in decision.verdicts if v.executed] == ["escalate_to_human",
                                                                 "update_crm"]


def test_without_a_surge_the_nurture_goes_out_by_email_when_due(
    make_container: ContainerFactory, clock: FixedClock, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    container = make_container(smtp_host="127.0.0.1", smtp_port=port)
    cid = _dana(container)
    worker = one_worker(container)
    with running_server(container) as base, client(base) as http:
        _events(http, _ev("dl1", "content_download", clock.now(), DANA, asset="whitepaper"))
        clock.advance(minutes=31)
        drain(worker)
        view = http.get(f"/v1/customers/{cid}").json()
    (sent,) = inbox.messages
    assert sent["To"] == "dana@example.com"
    assert sent["Subject"] == "Getting started with our guide"
    assert "Hi Dana, thanks for downloading our guide" in sent.get_payload()
    (row,) = view["outbox"]
    assert (row["channel"], row["purpose"], row["status"]) == ("email", "marketing", "sent")
    assert row["provider_message_id"] == sent["Message-ID"]


def test_cart_abandonment_goes_by_email_when_sms_is_not_consented(
    make_container: ContainerFactory, clock: FixedClock, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    container = make_container(smtp_host="127.0.0.1", smtp_port=port)
    cid = _dana(container, email={"service": "granted", "marketing": "granted"})
    worker = one_worker(container)
    with running_server(container) as base, client(base) as http:
        fired = _events(http, _ev("c1", "cart_abandoned", clock.now(), DANA, value=129))
        assert fired["results"][0]["fired"] == ["cart_abandonment"]
        clock.advance(minutes=30)
        drain(worker)
        assert inbox.messages == []  # due after an hour
        clock.advance(minutes=31)
        drain(worker)
        view = http.get(f"/v1/customers/{cid}").json()
    (decision,) = container.store.decisions(customer_id=cid)
    (send,) = [v for v in decision.verdicts if v.tool == "send_message"]
    assert send.outcome == "modify" and "switch_channel" in send.modifications
    assert "no_consent" in send.reason_codes[0] or "consent" in send.reason_codes[0]
    assert send.final is not None and send.final["channel"] == "email"
    (row,) = view["outbox"]
    assert (row["channel"], row["status"], row["address"]) == ("email", "sent",
                                                               "dana@example.com")
    (sent,) = inbox.messages
    assert sent["Subject"] == "Your cart is saved" and "left items in your cart" in str(
        sent.get_payload())
    # nothing was queued for SMS
    assert not any(r["channel"] == "sms" for r in view["outbox"])


def test_a_checkout_before_the_reminder_is_due_cancels_it(
    make_container: ContainerFactory, clock: FixedClock, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    container = make_container(smtp_host="127.0.0.1", smtp_port=port)
    cid = _dana(container)
    worker = one_worker(container)
    with running_server(container) as base, client(base) as http:
        _events(http, _ev("c1", "cart_abandoned", clock.now(), DANA))
        clock.advance(minutes=20)
        _events(http, _ev("k1", "checkout_completed", clock.now(), DANA))
        clock.advance(minutes=45)
        drain(worker)
        view = http.get(f"/v1/customers/{cid}").json()
    (job,) = [j for j in view["jobs"] if j["journey"] == "cart_abandonment"]
    assert job["status"] == "cancelled"
    assert job["error"].startswith("stale: checkout_completed (k1)")
    assert inbox.messages == [] and view["outbox"] == []
    assert container.store.decisions(customer_id=cid) == []


def test_a_proactive_message_in_quiet_hours_waits_for_the_morning(
    make_container: ContainerFactory, clock: FixedClock, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    # 03:30 UTC = 22:30 the evening before in New York: quiet hours until 08:00
    night = FixedClock(datetime(2026, 11, 4, 3, 30, tzinfo=UTC))
    clock.advance(seconds=(night.now() - clock.now()).total_seconds())
    container = make_container(smtp_host="127.0.0.1", smtp_port=port)
    cid = _dana(container)
    worker = one_worker(container)
    with running_server(container) as base, client(base) as http:
        _events(http, _ev("n1", "nps_answered", clock.now(), DANA, score=10))
        drain(worker)
        early = http.get(f"/v1/customers/{cid}").json()
        clock.advance(hours=9, minutes=29)  # 07:59 in New York
        drain(worker)
        assert inbox.messages == []
        clock.advance(minutes=1)  # 08:00
        drain(worker)
        late = http.get(f"/v1/customers/{cid}").json()
    (row,) = early["outbox"]
    assert row["status"] == "scheduled"
    assert row["not_before"].startswith("2026-11-04T13:00")  # 08:00 EST
    (decision,) = container.store.decisions(customer_id=cid)
    (send,) = [v for v in decision.verdicts if v.tool == "send_message"]
    assert "quiet_hours_deferred" in send.reason_codes
    (sent,) = inbox.messages
    assert sent["Subject"] == "Thank you"
    assert late["outbox"][0]["status"] == "sent"


def test_a_deferred_message_is_cancelled_if_the_customer_opts_out_overnight(
    make_container: ContainerFactory, clock: FixedClock, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    clock.advance(hours=12, minutes=30)  # 03:30 UTC next day
    container = make_container(smtp_host="127.0.0.1", smtp_port=port)
    cid = _dana(container)
    worker = one_worker(container)
    with running_server(container) as base, client(base) as http:
        _events(http, _ev("n1", "nps_answered", clock.now(), DANA, score=9))
        drain(worker)
        container.store.update_customer(cid, consent={"email": {"marketing": "revoked"}})
        clock.advance(hours=10)
        drain(worker)
        view = http.get(f"/v1/customers/{cid}").json()
    (row,) = view["outbox"]
    assert row["status"] == "cancelled" and row["last_error"].startswith("consent_revoked")
    assert inbox.messages == []


def test_a_trigger_fires_once_per_cooldown(
    make_container: ContainerFactory, clock: FixedClock
) -> None:
    container = make_container()
    _dana(container)
    with running_server(container) as base, client(base) as http:
        fired = [
            _events(http, _ev(f"pv{i}", "page_view", clock.now() + timedelta(seconds=i), DANA,
                              page="pricing"))["results"][0]["fired"]
            for i in range(6)
        ]
    assert fired == [[], [], ["pricing_surge"], [], [], []]


def test_journeys_file_errors_name_their_line_and_a_bad_edit_keeps_the_old_version(
    tmp_path: Path,
) -> None:
    bad = "journeys:\n  - name: x\n    trigger: {event: page_view}\n    actions: {send: " \
          "{channel: fax, template: t}}\n"
    with pytest.raises(JourneysError) as info:
        parse_journeys(bad, "j.yaml")
    assert "line 4" in str(info.value) and "channel" in str(info.value)
    path = tmp_path / "journeys.yaml"
    path.write_text("templates: {t: hello}\njourneys:\n  - name: a\n    trigger: {event: x}\n"
                    "    actions: {send: {channel: email, template: t}}\n")
    provider = JourneysProvider(path)
    assert [j.name for j in provider.get().journeys] == ["a"]
    path.write_text("journeys: [{name: b}]\n")
    provider._checked = 0  # look now instead of in half a second
    assert [j.name for j in provider.get().journeys] == ["a"]
    assert provider.last_error is not None and "trigger" in str(provider.last_error)


def test_an_email_reply_is_threaded_under_the_customers_message(
    make_container: ContainerFactory, smtp: tuple[Inbox, int]
) -> None:
    """Inbound by the email webhook (Mailgun style) → the agent's reply goes out by SMTP with
    In-Reply-To/References of the customer's Message-ID and the subject as "Re: …"."""
    inbox, port = smtp
    container = make_container(smtp_host="127.0.0.1", smtp_port=port)
    worker = one_worker(container)
    with running_server(container) as base, client(base) as http:
        accepted = http.post("/v1/channels/email/inbound", data={
            "from": "Dana Reyes <dana@example.com>", "subject": "Growth plan",
            "stripped-text": "What does the Growth plan include?",
            "Message-Id": "<abc123@mail.example.com>",
            "References": "<older@mail.example.com>",
        })
        assert accepted.status_code == 200, accepted.text
        again = http.post("/v1/channels/email/inbound", data={
            "from": "dana@example.com", "subject": "Growth plan",
            "stripped-text": "What does the Growth plan include?",
            "Message-Id": "<abc123@mail.example.com>",
        })
        assert again.json()["duplicate"] is True
        drain(worker)
    (sent,) = inbox.messages
    assert sent["To"] == "dana@example.com"
    assert sent["Subject"] == "Re: Growth plan"
    assert sent["In-Reply-To"] == "<abc123@mail.example.com>"
    assert sent["References"].split() == ["<older@mail.example.com>",
                                          "<abc123@mail.example.com>"]
    assert "Growth" in str(sent.get_payload())
