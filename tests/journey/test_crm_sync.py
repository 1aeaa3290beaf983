"""CRM sync out: every profile change reaches the CRM as a signed webhook, queued in the
transaction that made it and retried until delivered — through the real server, the real
worker and a real HTTP receiver that checks the signature."""

from __future__ import annotations

from typing import Any

from core.clock import FixedClock
from tests.conftest import ContainerFactory
from tests.providers import WebhookReceiver
from tests.server import client, drain, one_worker, running_server

KEYS: dict[str, Any] = {"test-admin": ["admin"], "test-writer": ["messages:write"]}


def _profile(**overrides: Any) -> dict[str, Any]:
    return {"identities": {"email": "ana@example.com", "external_id": "crm-7"},
            "name": "Ana Lima", "timezone": "America/Sao_Paulo",
            "attributes": {"plan_interest": "Growth"}, "lifecycle_stage": "consideration",
            "consent": {"email": {"marketing": {"status": "granted", "source": "signup-form"}}},
            **overrides}


def _types(received: list[dict[str, Any]]) -> list[str]:
    return [r["json"]["type"] for r in received]


def test_profile_changes_reach_the_crm_signed_once_each_with_retries(
    make_container: ContainerFactory, clock: FixedClock
) -> None:
    with WebhookReceiver(secret="crm-secret", now=lambda: clock.now().timestamp()) as crm:
        container = make_container(api_keys=KEYS, crm_webhook_url=f"{crm.base_url}/crm",
                                   crm_webhook_secret="crm-secret")
        worker = one_worker(container)
        with running_server(container) as base, client(base) as http:
            crm.down = True
            created = http.put("/v1/customers", json=_profile())
            drain(worker)  # the CRM is down: the deliveries wait for a retry
            assert created.status_code == 201 and crm.received == []
            crm.down = False
            clock.advance(minutes=10)
            drain(worker)
            first = list(crm.received)
            # the same request again changes nothing, so nothing is sent
            again = http.put("/v1/customers", json=_profile())
            drain(worker)
            assert again.status_code == 200 and len(crm.received) == len(first)
            # a purchase moves the stage; a buying signal in chat writes the CRM
            http.post("/v1/events", json={"events": [{
                "id": "o1", "type": "order_completed", "customer": {"email": "ana@example.com"},
                "properties": {"total": 399}}]})
            revoked = http.put("/v1/customers", json={
                "identities": {"email": "ana@example.com"},
                "consent": {"email": {"marketing": {"status": "revoked",
                                                    "source": "preferences"}}}})
            assert revoked.status_code == 200, revoked.text
            reply = http.post("/v1/messages", json={
                "customer": {"email": "ana@example.com"}, "channel": "email",
                "text": "We are 40 seats and need SSO, can you send a quote?"})
            assert reply.status_code == 200, reply.text
            drain(worker)
    customer_id = created.json()["id"]
    assert sorted(_types(first)) == sorted(["profile.updated", "profile.updated",
                                            "consent.changed"])
    fields = {k: v for r in first if r["json"]["type"] == "profile.updated"
              for k, v in r["json"]["data"].items()}
    assert fields["created"] is True and fields["attributes"] == {"plan_interest": "Growth"}
    # each event carries the profile as it is at delivery
    assert {r["json"]["profile"]["timezone"] for r in first} == {"America/Sao_Paulo"}
    granted = next(r["json"] for r in first if r["json"]["type"] == "consent.changed")
    assert granted["data"]["changes"][0] | {"at": None} == {
        "channel": "email", "purpose": "marketing", "previous": "unknown", "status": "granted",
        "source": "signup-form", "at": None}
    later = crm.received[len(first):]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in later:
        by_type.setdefault(r["json"]["type"], []).append(r["json"])
    assert by_type["stage.changed"][0]["data"] == {"from": "consideration", "to": "retention"}
    assert {a["data"]["kind"] for a in by_type["crm.activity"]} >= {"stage_change"}
    from_turn = [a for a in by_type["crm.activity"] if a["data"]["decision_id"]]
    assert from_turn, "the turn's update_crm activity was not synced"
    assert any(u["data"].get("attributes", {}).get("seats") == 40
               for u in by_type["profile.updated"])
    assert by_type["consent.changed"][0]["data"]["changes"][0]["status"] == "revoked"
    for r in crm.received:  # each signed (the receiver verified it), keyed, with the profile
        body = r["json"]
        assert r["headers"]["x-journey-event"] == body["type"]
        assert r["headers"]["idempotency-key"] == body["id"]
        assert body["customer_id"] == customer_id and body["profile"]["id"] == customer_id
    assert len({r["json"]["id"] for r in crm.received}) == len(crm.received)  # once each
    jobs = container.store.jobs.list(kind="sync")
    assert {j.status for j in jobs} == {"done"} and len(jobs) == len(crm.received)
    assert max(j.attempts for j in jobs) >= 2  # the first ones were retried


def test_without_a_crm_webhook_nothing_is_queued(make_container: ContainerFactory) -> None:
    container = make_container(api_keys=KEYS)
    with running_server(container) as base, client(base) as http:
        assert http.put("/v1/customers", json=_profile()).status_code == 201
    assert container.store.jobs.list(kind="sync") == []
