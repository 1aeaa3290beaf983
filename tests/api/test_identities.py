"""Identities done right, through the real server: a phone is one E.164 number however it is
written, an email is validated and compared in one form, a malformed one is a 422 naming it, and
profiles a database already holds under other spellings are merged (and the merge recorded)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import insert, select

from journey.runtime import Container
from memory import db
from tests.conftest import ContainerFactory
from tests.server import client, running_server


@pytest.fixture
def served(make_container: ContainerFactory) -> Iterator[tuple[Container, str]]:
    container = make_container()
    with running_server(container) as base:
        yield container, base


def sms(phone: str, text: str, external_id: str) -> dict[str, object]:
    return {"channel": "sms", "customer": {"phone": phone}, "text": text,
            "external_id": external_id}


def test_one_phone_written_three_ways_is_one_profile(served: tuple[Container, str]) -> None:
    container, base = served
    api = client(base)
    ids = set()
    for i, phone in enumerate(["+1 (415) 555-0177", "+14155550177", "415-555-0177"]):
        response = api.post("/v1/messages", json=sms(phone, f"hello {i}", f"sms-{i}"))
        assert response.status_code == 200, response.text
        ids.add(response.json()["decision"]["customer_id"])
    assert len(ids) == 1
    profile = container.store.get_customer(ids.pop())
    assert profile is not None
    assert [(i.kind, i.value) for i in profile.identities] == [("phone", "+14155550177")]
    assert container.store.counts()["customers"] == 1


def test_an_email_is_compared_in_one_form(served: tuple[Container, str]) -> None:
    container, base = served
    api = client(base)
    first = api.post("/v1/messages", json={
        "channel": "email", "customer": {"email": "  Dana.Smith@Example.COM "},
        "text": "hi", "external_id": "e-1"})
    second = api.post("/v1/messages", json={
        "channel": "email", "customer": {"email": "dana.smith@example.com"},
        "text": "hi again", "external_id": "e-2"})
    assert first.status_code == second.status_code == 200, first.text
    customer_id = first.json()["decision"]["customer_id"]
    assert second.json()["decision"]["customer_id"] == customer_id
    profile = container.store.get_customer(customer_id)
    assert profile is not None and profile.identity("email") == "dana.smith@example.com"


@pytest.mark.parametrize(
    ("customer", "field"),
    [
        ({"email": "x@@y"}, "customer.email"),
        ({"email": "dana@"}, "customer.email"),
        ({"email": "dana@localhost"}, "customer.email"),
        ({"phone": "12"}, "customer.phone"),
        ({"phone": "call me maybe"}, "customer.phone"),
    ],
)
def test_a_malformed_identity_is_a_422_naming_it_and_nothing_is_stored(
    served: tuple[Container, str], customer: dict[str, str], field: str
) -> None:
    container, base = served
    channel = "email" if "email" in customer else "sms"
    response = client(base).post("/v1/messages", json={
        "channel": channel, "customer": customer, "text": "hello", "external_id": "bad-1"})
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"]
    assert container.store.counts()["customers"] == 0
    assert container.store.counts()["messages"] == 0


def test_profiles_stored_under_other_spellings_are_merged_when_the_server_starts(
    make_container: ContainerFactory, tmp_path: object
) -> None:
    """Rows written before normalisation: two profiles whose phones are one number, and an
    email in capitals. Starting the server normalises them and merges the two, recorded."""
    first = make_container()
    store = first.store
    a = store.create_customer([], "lead", name="Old A")
    b = store.create_customer([], "lead", name="Old B")
    with store.engine.begin() as conn:  # as an older version stored them
        conn.execute(insert(db.identities), [
            {"customer_id": a.id, "kind": "phone", "value": "+1 (415) 555-0177"},
            {"customer_id": b.id, "kind": "phone", "value": "415-555-0177"},
            {"customer_id": b.id, "kind": "email", "value": "Old.B@Example.com"},
        ])
    data_dir = first.settings.data_dir
    first.close()

    second = make_container(data_dir=data_dir)
    with running_server(second) as base:
        found = client(base).post("/v1/messages", json=sms("+14155550177", "hi", "after-1"))
        assert found.status_code == 200, found.text
        customer_id = found.json()["decision"]["customer_id"]
        view = client(base).get(f"/v1/customers/{customer_id}").json()
    assert customer_id in (a.id, b.id)
    identities = sorted((i["kind"], i["value"]) for i in view["profile"]["identities"])
    assert identities == [("email", "old.b@example.com"), ("phone", "+14155550177")]
    assert len(view["merges"]) == 1
    assert "normalised" in view["merges"][0]["reason"]
    with second.store.engine.connect() as conn:
        values = sorted(r.value for r in conn.execute(select(db.identities.c.value)))
    assert values == ["+14155550177", "old.b@example.com"]
