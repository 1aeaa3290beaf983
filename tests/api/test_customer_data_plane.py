"""The customer data plane end to end, through the public API alone, on the real server with
its worker: a company creates a customer with consent and timezone, sends them a transactional
message, runs marketing journeys that respect that consent, exports them and erases them —
and then no file of the data dir holds any of their identities or words, while the CRM hears
of every step by signed webhooks, the erasure last."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.clock import FixedClock
from journey.runtime import Container
from tests.api.test_erasure import files_with
from tests.conftest import ContainerFactory
from tests.providers import WebhookReceiver
from tests.server import client, drain, one_worker, running_server

MAYA = {"email": "Maya.Quillfeather@example.com", "phone": "+351 912 345 678"}
#: nothing of these may be left on disk after the erasure (compared case-insensitively)
TRACES = (b"quillfeather", b"351912345678", b"ornithopter", b"zz-77193")
KEYS: dict[str, Any] = {
    "shop": {"name": "shop-backend", "scopes": ["customers:write", "customers:read",
                                                "notifications:write", "messages:write"]},
    "dpo": {"name": "dpo@acme.example", "scopes": ["customers:erase", "customers:read"]},
    "auditor": ["conversations:read"],
}


@pytest.fixture
def crm(clock: FixedClock) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secret="crm-secret", now=lambda: clock.now().timestamp()) as receiver:
        yield receiver


def test_in_out_and_gone_through_the_public_api(
    make_container: ContainerFactory, clock: FixedClock, crm: WebhookReceiver, tmp_path: Path,
) -> None:
    container: Container = make_container(api_keys=KEYS, crm_webhook_url=f"{crm.base_url}/crm",
                                          crm_webhook_secret="crm-secret")
    worker = one_worker(container)
    with running_server(container) as base:
        shop, dpo, auditor = client(base, "shop"), client(base, "dpo"), client(base, "auditor")
        # in: consent for email marketing, none for SMS marketing; Lisbon time
        created = shop.put("/v1/customers", json={
            "identities": MAYA, "name": "Maya Quillfeather", "timezone": "Europe/Lisbon",
            "attributes": {"first_name": "Maya"},
            "consent": {"email": {"marketing": {"status": "granted", "source": "signup-form",
                                                "evidence": "form v3"}},
                        "sms": {"marketing": {"status": "revoked", "source": "signup-form"}}}})
        assert created.status_code == 201, created.text
        maya = created.json()["id"]
        # a transactional message, through the policy gate, delivered by the relay
        shipped = shop.post("/v1/notifications", json={
            "template": "order_shipped", "customer": {"email": MAYA["email"]},
            "idempotency_key": "ship-ZZ-77193", "variables": {
                "order_id": "ZZ-77193", "carrier": "CTT", "delivery_date": "2026-11-06",
                "tracking_url": "https://track.example/ZZ-77193"}})
        assert shipped.status_code == 202 and shipped.json()["status"] == "queued", shipped.text
        # two marketing journeys: an email nurture (consent given) and an SMS cart reminder
        # (consent revoked)
        events = shop.post("/v1/events", json={"events": [
            {"id": "dl-1", "type": "content_download", "customer": {"email": MAYA["email"]},
             "properties": {"asset": "ornithopter guide"}},
            {"id": "cart-1", "type": "cart_abandoned", "customer": {"phone": MAYA["phone"]},
             "properties": {"item": "ornithopter kit"}}]})
        assert events.json()["accepted"] == 2, events.text
        assert sorted(f for r in events.json()["results"] for f in r["fired"]) == [
            "cart_abandonment", "whitepaper_nurture"]
        drain(worker)
        clock.advance(hours=2)  # both journeys come due (30 minutes and an hour)
        drain(worker)
        decisions = auditor.get("/v1/decisions", params={"customer_id": maya}).json()
        sends = [(d["proposed"][v["action_index"]]["channel"], v["outcome"], v["reason_codes"])
                 for d in decisions["decisions"] for v in d["verdicts"]
                 if v["tool"] == "send_message" and d["trigger"]]
        assert ("email", "allow", ["allowed"]) in sends or any(
            c == "email" and o != "deny" for c, o, _ in sends), sends
        assert any(c == "sms" and o == "deny" and "consent_revoked" in r
                   for c, o, r in sends), sends
        outbox = {(o["channel"], o["purpose"], o["status"])
                  for o in shop.get(f"/v1/customers/{maya}").json()["outbox"]}
        assert outbox == {("email", "transactional", "sent"), ("email", "marketing", "sent")}

        # out: everything held about her
        export = dpo.get(f"/v1/customers/{maya}/export")
        assert export.status_code == 200, export.text
        texts = " ".join(m["text"] for c in export.json()["conversations"]
                         for m in c["messages"])
        assert "ZZ-77193" in texts and "guide" in texts
        assert [(e["channel"], e["status"]) for e in export.json()["consent_ledger"]] == [
            ("email", "granted"), ("sms", "revoked")]
        assert files_with(tmp_path, TRACES), "nothing of her was on disk before the erasure"

        # gone
        erased = dpo.delete(f"/v1/customers/{maya}")
        assert erased.status_code == 200, erased.text
        drain(worker)  # the CRM hears of it
        assert shop.get("/v1/customers", params={"email": MAYA["email"]}).status_code == 404
    assert files_with(tmp_path, TRACES) == {}
    kinds = [r["json"]["type"] for r in crm.received]
    assert {"profile.updated", "consent.changed", "crm.activity"} <= set(kinds)
    assert kinds[-1] == "customer.erased"
    gone = crm.received[-1]["json"]
    assert gone["customer_id"] == maya and "profile" not in gone
    assert not any(t.decode() in str(gone).lower() for t in TRACES)
