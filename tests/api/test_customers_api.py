"""The profile API through the real server: create or update a customer by any identity with
their consent (and where it came from), look them up, and read the consent ledger a regulator
asks for — every change, who made it, when, from what source, on what evidence."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from journey.runtime import Container
from tests.conftest import ContainerFactory
from tests.server import client, running_server

SIGNUP_AT = "2026-11-01T10:00:00Z"


@pytest.fixture
def served(make_container: ContainerFactory) -> Iterator[tuple[Container, str]]:
    container = make_container(api_keys={
        "test-admin": ["admin"],
        "crm-sync": {"name": "crm-sync", "scopes": ["customers:write", "customers:read"]},
        "reader": ["customers:read"], "test-writer": ["messages:write"],
    })
    with running_server(container) as base:
        yield container, base


def dana(**overrides: Any) -> dict[str, Any]:
    return {
        "identities": {"email": "Dana@Example.com", "phone": "+1 415 555 0100",
                       "external_id": "shop-42"},
        "name": "Dana Reyes",
        "locale": "en-US",
        "timezone": "America/New_York",
        "attributes": {"plan": "Growth", "seats": 12},
        "lifecycle_stage": "consideration",
        "channel_preference": "email",
        "consent": {"email": {"marketing": {"status": "granted", "source": "signup-form",
                                            "at": SIGNUP_AT}}},
        **overrides,
    }


def test_put_creates_then_updates_one_profile_found_by_any_identity(
    served: tuple[Container, str],
) -> None:
    container, base = served
    api = client(base, key="crm-sync")
    created = api.put("/v1/customers", json=dana())
    assert created.status_code == 201, created.text
    profile = created.json()
    assert profile["name"] == "Dana Reyes"
    assert profile["timezone"] == "America/New_York"
    assert profile["locale"] == "en-US"
    assert profile["channel_preference"] == "email"
    assert profile["lifecycle_stage"] == "consideration"
    assert profile["attributes"] == {"plan": "Growth", "seats": 12}
    assert profile["consent"]["email"]["marketing"] == "granted"
    assert sorted((i["kind"], i["value"]) for i in profile["identities"]) == [
        ("email", "dana@example.com"), ("external_id", "shop-42"), ("phone", "+14155550100")]

    again = api.put("/v1/customers", json={
        "identities": {"external_id": "shop-42"}, "attributes": {"seats": 30},
        "lifecycle_stage": "decision"})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == profile["id"]
    assert again.json()["attributes"] == {"plan": "Growth", "seats": 30}
    assert again.json()["lifecycle_stage"] == "decision"
    assert container.store.counts()["customers"] == 1

    reader = client(base, key="reader")
    for query in ({"email": "DANA@example.com"}, {"phone": "415-555-0100"},
                  {"external_id": "shop-42"}):
        found = reader.get("/v1/customers", params=query)
        assert found.status_code == 200, (query, found.text)
        assert found.json()["id"] == profile["id"]
    assert reader.get("/v1/customers", params={"email": "nobody@example.com"}).status_code == 404
    none = reader.get("/v1/customers")
    assert none.status_code == 422 and "email, phone" in none.json()["detail"]
    assert reader.put("/v1/customers", json=dana()).status_code == 403


def test_the_stage_moves_only_forward_unless_forced(served: tuple[Container, str]) -> None:
    _, base = served
    api = client(base, key="crm-sync")
    customer_id = api.put("/v1/customers", json=dana()).json()["id"]
    back = api.put("/v1/customers", json={"identities": {"external_id": "shop-42"},
                                          "lifecycle_stage": "awareness"})
    assert back.status_code == 422
    assert "lifecycle_stage" in back.json()["detail"] and "force" in back.json()["detail"]
    forced = api.put("/v1/customers", json={"identities": {"external_id": "shop-42"},
                                            "lifecycle_stage": "awareness", "force": True})
    assert forced.status_code == 200 and forced.json()["lifecycle_stage"] == "awareness"
    assert forced.json()["id"] == customer_id


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"lifecycle_stage": "ecstatic"}, "lifecycle_stage"),
        ({"identities": {}}, "identities"),
        ({"identities": {"email": "x@@y"}}, "identities.email"),
        ({"identities": {"phone": "12"}}, "identities.phone"),
        ({"consent": {"email": {"marketing": {"status": "maybe"}}}}, "consent.email.marketing"),
        ({"consent": {"pigeon": {"marketing": {"status": "granted"}}}}, "consent.pigeon"),
        ({"channel_preference": "fax"}, "channel_preference"),
        ({"locale": "english please"}, "locale"),
    ],
)
def test_bad_fields_are_a_422_naming_them_and_change_nothing(
    served: tuple[Container, str], change: dict[str, Any], field: str
) -> None:
    container, base = served
    response = client(base, key="crm-sync").put("/v1/customers", json=dana(**change))
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"]
    assert container.store.counts()["customers"] == 0


def test_every_consent_change_is_in_the_ledger_with_its_source(
    served: tuple[Container, str],
) -> None:
    _, base = served
    api = client(base, key="crm-sync")
    customer_id = api.put("/v1/customers", json=dana()).json()["id"]
    # the same grant again changes nothing and records nothing
    assert api.put("/v1/customers", json=dana()).status_code == 200
    # the customer texts STOP
    stop = client(base).post("/v1/messages", json={
        "channel": "sms", "customer": {"phone": "+14155550100"}, "text": "STOP",
        "external_id": "sms-stop-1"})
    assert stop.status_code == 200, stop.text
    message_id = stop.json()["message_id"]

    ledger = client(base, key="reader").get(f"/v1/customers/{customer_id}/consent")
    assert ledger.status_code == 200, ledger.text
    entries = [(e["channel"], e["purpose"], e["previous"], e["status"], e["source"], e["by"])
               for e in ledger.json()]
    assert entries == [
        ("email", "marketing", "unknown", "granted", "signup-form", "crm-sync"),
        ("sms", "service", "unknown", "revoked", "keyword", "customer"),
        ("sms", "marketing", "unknown", "revoked", "keyword", "customer"),
    ]
    first, *stops = ledger.json()
    assert first["at"].startswith("2026-11-01T10:00:00")
    assert all(e["evidence"] == f"message {message_id}" for e in stops)
    assert client(base, key="reader").get("/v1/customers/cus_nope/consent").status_code == 404


def test_a_merge_keeps_both_ledgers_and_records_what_it_changed(
    served: tuple[Container, str],
) -> None:
    """Two profiles that turn out to be one person: the survivor's ledger holds both histories,
    and the consent the merge changes (a revocation on either side stands) is recorded too."""
    _, base = served
    api = client(base, key="crm-sync")
    first = api.put("/v1/customers", json={
        "identities": {"email": "dana@example.com"},
        "consent": {"sms": {"marketing": {"status": "granted", "source": "checkout"}}}}).json()
    second = api.put("/v1/customers", json={
        "identities": {"phone": "+14155550100"}, "locale": "pt-BR", "channel_preference": "sms",
        "consent": {"sms": {"marketing": {"status": "revoked", "source": "support-call"}}}}).json()
    both = api.put("/v1/customers", json={
        "identities": {"email": "dana@example.com", "phone": "+14155550100"}})
    assert both.status_code == 200 and both.json()["id"] == first["id"]
    assert both.json()["consent"]["sms"]["marketing"] == "revoked"
    # what only the merged profile knew fills the survivor's gaps
    assert (both.json()["locale"], both.json()["channel_preference"]) == ("pt-BR", "sms")
    ledger = client(base, key="reader").get(f"/v1/customers/{first['id']}/consent").json()
    assert [(e["status"], e["source"]) for e in ledger] == [
        ("granted", "checkout"), ("revoked", "support-call"), ("revoked", "merge")]
    assert ledger[-1]["evidence"] == f"merged {second['id']} into {first['id']}"
    assert ledger[-1]["previous"] == "granted"
