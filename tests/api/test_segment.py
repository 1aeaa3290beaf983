"""Segment-compatible ingestion through the real server, sent by the official clients:
``segment-analytics-python`` and ``rudder-sdk-python`` pointed at it deliver identify, track,
page and alias; the stored profiles (identities normalised, traits, timezone, locale), the
consent ledger, the events, the lifecycle moves and the journeys fired are what the messages
said, and a replayed ``messageId`` changes nothing. Bad input is refused message by message,
naming the field; a wrong write key is a 401."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import rudderstack.analytics as rudder_analytics
import segment.analytics as segment_analytics
from sqlalchemy import func, select

from core.clock import FixedClock
from core.domain import CustomerProfile, Event, Identity
from journey.runtime import Container
from memory import db
from tests.conftest import ContainerFactory
from tests.server import running_server

WRITE_KEY = "wk-website"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture
def served(make_container: ContainerFactory) -> Iterator[tuple[Container, str]]:
    container = make_container(segment_write_keys={WRITE_KEY: "website", "wk-app": "app"})
    with running_server(container) as base:
        yield container, base


def writer(base: str, key: str | None = WRITE_KEY) -> httpx.Client:
    """A plain HTTP client sending ``key`` as Segment does: the Basic user, no password."""
    return httpx.Client(base_url=base, auth=(key, "") if key else None, timeout=60)


def profile_of(container: Container, kind: str, value: str) -> CustomerProfile:
    found = container.store.find_customer(Identity(kind=kind, value=value))  # type: ignore[arg-type]
    assert found is not None, (kind, value)
    return found


def events_of(container: Container, customer_id: str) -> list[Event]:
    return sorted(container.store.recent_events(customer_id, since=EPOCH, limit=500),
                  key=lambda e: e.id)


def identities(profile: CustomerProfile) -> list[tuple[str, str]]:
    return sorted((i.kind, i.value) for i in profile.identities)


def fired(container: Container, customer_id: str) -> list[str]:
    return sorted(j.journey or "" for j in container.store.jobs.list(customer_id=customer_id)
                  if j.kind == "journey")


def ledger_rows(container: Container) -> int:
    with container.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(db.consent_events))
                   .scalar_one())


# --- the official clients --------------------------------------------------------------------


def test_segment_client_identify_track_page_alias(served: tuple[Container, str]) -> None:
    container, base = served
    analytics = segment_analytics.Client(WRITE_KEY, host=base, sync_mode=True, max_retries=0)
    analytics.identify(
        user_id="shop-42", anonymous_id="anon-1", message_id="seg-identify-1",
        traits={"email": "Dana@Example.com", "phone": "+1 (415) 555-0100",
                "firstName": "Dana", "lastName": "Reyes", "company": "Acme", "seats": 12,
                "note": "card 4111 1111 1111 1111"},
        context={"timezone": "America/New_York", "locale": "en_US",
                 "messaging_subscriptions": [
                     {"key": "dana@example.com", "type": "EMAIL", "status": "SUBSCRIBED"}],
                 "consent": {"categoryPreferences": {"SMS": False, "Analytics": True,
                                                     "WhatsApp Marketing": True}}},
    )
    dana = profile_of(container, "external_id", "shop-42")
    assert identities(dana) == [
        ("anonymous_id", "anon-1"), ("email", "dana@example.com"),
        ("external_id", "shop-42"), ("phone", "+14155550100")]
    assert dana.name == "Dana Reyes"
    assert (dana.timezone, dana.locale) == ("America/New_York", "en-US")
    assert dana.attributes["company"] == "Acme"
    assert dana.attributes["seats"] == 12
    assert "4111 1111 1111 1111" not in dana.attributes["note"]  # masked like any signal
    assert set(dana.attributes) == {"company", "seats", "note"}
    assert dana.consent_for("email", "marketing") == "granted"
    assert dana.consent_for("sms", "marketing") == "revoked"
    ledger = container.store.consent_ledger(dana.id)
    assert [(r["channel"], r["purpose"], r["status"], r["source"], r["by"]) for r in ledger] == [
        ("email", "marketing", "granted", "segment", "segment:website"),
        ("sms", "marketing", "revoked", "segment", "segment:website"),
        ("whatsapp", "marketing", "granted", "segment", "segment:website")]
    assert ledger[0]["evidence"] == "messageId seg-identify-1: context.messaging_subscriptions"
    assert {r["evidence"] for r in ledger[1:]} == {
        "messageId seg-identify-1: context.consent.categoryPreferences"}
    assert dana.lifecycle_stage == "awareness"

    # three views of the pricing page, named or by path: the lifecycle rule and the journey
    analytics.page(user_id="shop-42", name="Pricing", message_id="seg-page-1")
    analytics.page(anonymous_id="anon-1", properties={"path": "/pricing/"},
                   message_id="seg-page-2")
    analytics.page(user_id="shop-42", category="Docs", name="Setup", message_id="seg-page-3")
    assert profile_of(container, "external_id", "shop-42").lifecycle_stage == "awareness"
    analytics.page(user_id="shop-42", properties={"url": "https://shop.example/pricing"},
                   message_id="seg-page-4")
    dana = profile_of(container, "external_id", "shop-42")
    assert dana.lifecycle_stage == "decision"
    assert fired(container, dana.id) == ["pricing_surge"]
    pages = [e for e in events_of(container, dana.id) if e.type == "page_view"]
    assert [e.properties["page"] for e in pages] == ["pricing", "pricing", "setup", "pricing"]
    assert pages[2].properties["segment"] == {"type": "page", "name": "Setup",
                                              "category": "Docs"}

    analytics.track(user_id="shop-42", event="Order Completed", message_id="seg-order-1",
                    properties={"order_id": "o-1", "total": 99.5})
    dana = profile_of(container, "external_id", "shop-42")
    assert dana.lifecycle_stage == "retention"
    order = next(e for e in events_of(container, dana.id) if e.id == "seg-order-1")
    assert order.type == "order_completed"
    assert order.properties == {"order_id": "o-1", "total": 99.5,
                                "segment": {"type": "track", "event": "Order Completed"}}
    moves = [a["body"] for a in container.store.crm_activities(dana.id)
             if a["kind"] == "stage_change"]
    assert [(m["to"], m["rule"]) for m in moves] == [
        ("decision", "pricing-page-surge"), ("retention", "purchased")]

    # a visitor known only by a device id, then aliased to the customer: one profile
    analytics.track(anonymous_id="anon-2", event="Content Download", message_id="seg-dl-1")
    visitor = profile_of(container, "anonymous_id", "anon-2")
    assert visitor.id != dana.id
    analytics.alias(previous_id="anon-2", user_id="shop-42", message_id="seg-alias-1")
    assert profile_of(container, "anonymous_id", "anon-2").id == dana.id
    merges = container.store.merges(dana.id)
    assert [(m["survivor_id"], m["merged_id"], m["by"]) for m in merges] == [
        (dana.id, visitor.id, "segment:website")]
    assert "content_download" in {e.type for e in events_of(container, dana.id)}

    # every messageId again, with other contents: nothing changes
    before = (profile_of(container, "external_id", "shop-42"),
              events_of(container, dana.id), ledger_rows(container), fired(container, dana.id),
              container.store.merges(dana.id))
    analytics.identify(user_id="shop-42", message_id="seg-identify-1",
                       traits={"name": "Someone Else", "seats": 1, "unsubscribed": True},
                       context={"timezone": "Europe/Paris"})
    analytics.track(user_id="shop-42", event="Subscription Cancelled", message_id="seg-order-1")
    analytics.page(user_id="shop-42", name="Pricing", message_id="seg-page-1")
    analytics.alias(previous_id="anon-9", user_id="shop-42", message_id="seg-alias-1")
    after = (profile_of(container, "external_id", "shop-42"),
             events_of(container, dana.id), ledger_rows(container), fired(container, dana.id),
             container.store.merges(dana.id))
    assert after == before
    assert container.store.find_customer(Identity(kind="anonymous_id", value="anon-9")) is None


def test_rudderstack_client_gzip_batches(served: tuple[Container, str],
                                         clock: FixedClock) -> None:
    """The RudderStack SDK compresses its batches and puts identify's traits in
    ``context.traits``; in its background mode messages may share a batch."""
    container, base = served
    errors: list[Any] = []
    analytics = rudder_analytics.Client("wk-app", host=base, gzip=True, max_retries=0,
                                        on_error=lambda e, batch: errors.append(e))
    analytics.page(anonymous_id="dev-7", name="Pricing", message_id="rs-page-0")
    analytics.identify(user_id="u-7", anonymous_id="dev-7", message_id="rs-identify-1",
                       traits={"email": "LEE@example.org", "name": "Lee Park",
                               "unsubscribed": True, "plan": "pro"},
                       context={"timezone": "Asia/Seoul"})
    analytics.track(user_id="u-7", event="nps answered", properties={"score": 3},
                    message_id="rs-nps-1")
    analytics.screen(user_id="u-7", name="Settings Screen", message_id="rs-screen-1")
    analytics.group(user_id="u-7", group_id="acme", traits={"size": 40},
                    message_id="rs-group-1")
    analytics.alias(previous_id="u-7-legacy", user_id="u-7", message_id="rs-alias-1")
    analytics.flush()
    analytics.join()
    assert errors == []

    lee = profile_of(container, "email", "lee@example.org")
    # an alias's previousId no profile holds is taken for a device id (anonymous_id)
    assert identities(lee) == [("anonymous_id", "dev-7"), ("anonymous_id", "u-7-legacy"),
                               ("email", "lee@example.org"), ("external_id", "u-7")]
    assert (lee.name, lee.timezone) == ("Lee Park", "Asia/Seoul")
    # the name, email and unsubscribed traits went to the profile's own fields, not here;
    # the events moved the intent scores the journeys declare
    assert lee.attributes == {"plan": "pro",
                              "intent_scores": {"purchase": 0.15, "churn": 0.2}}
    # the plan trait makes a customer (a lifecycle rule over attributes)
    assert lee.lifecycle_stage == "retention"
    assert lee.consent_for("email", "marketing") == "revoked"
    assert [(r["channel"], r["status"], r["by"], r["evidence"])
            for r in container.store.consent_ledger(lee.id)] == [
        ("email", "revoked", "segment:app", "messageId rs-identify-1: traits.unsubscribed")]
    by_id = {e.id: e for e in events_of(container, lee.id)}
    assert sorted(by_id) == ["rs-group-1", "rs-nps-1", "rs-page-0", "rs-screen-1"]
    assert by_id["rs-nps-1"].type == "nps_answered"
    assert by_id["rs-screen-1"].type == "screen_view"
    assert by_id["rs-screen-1"].properties["screen"] == "settings_screen"
    assert by_id["rs-group-1"].properties["group_id"] == "acme"
    # stamped on the server's clock (a month behind this machine's): the time a message
    # waited on the client (sentAt - timestamp) is kept, the client's own clock is not
    assert all(clock.now() - timedelta(days=1) < e.occurred_at <= clock.now()
               for e in by_id.values())
    assert fired(container, lee.id) == ["nps_detractor"]

    replay = rudder_analytics.Client("wk-app", host=base, gzip=True, sync_mode=True,
                                     max_retries=0)
    replay.track(user_id="u-7", event="nps answered", properties={"score": 10},
                 message_id="rs-nps-1")
    replay.identify(user_id="u-7", traits={"name": "X"}, message_id="rs-identify-1")
    assert events_of(container, lee.id) == list(by_id.values())
    assert profile_of(container, "external_id", "u-7") == lee


# --- bad input, through plain HTTP -----------------------------------------------------------


def test_write_key_is_required(served: tuple[Container, str]) -> None:
    container, base = served
    body = {"userId": "k-1", "event": "Signed Up", "messageId": "k-1"}
    for key in (None, "wk-wrong", "test-admin"):  # an API key is not a write key
        response = writer(base, key).post("/v1/track", json=body)
        assert response.status_code == 401, (key, response.text)
        assert response.headers["www-authenticate"].startswith("Basic")
    bearer = httpx.post(f"{base}/v1/track", json=body, timeout=60,
                        headers={"Authorization": f"Bearer {WRITE_KEY}"})
    assert bearer.status_code == 401
    assert container.store.counts()["customers"] == 0
    # Segment also reads the key from the body
    in_body = httpx.post(f"{base}/v1/track", json={**body, "writeKey": WRITE_KEY}, timeout=60)
    assert in_body.status_code == 200, in_body.text
    assert in_body.json()["status"] == "accepted"


def test_bad_messages_name_the_field(served: tuple[Container, str]) -> None:
    container, base = served
    api = writer(base)
    cases = [
        ("/v1/track", {"event": "Signed Up"}, "give userId or anonymousId"),
        ("/v1/identify", {"userId": "b-1", "traits": {"email": "x@@y"}}, "traits.email: "),
        ("/v1/identify", {"userId": "b-1", "traits": {"phone": "12"}}, "traits.phone: "),
        ("/v1/track", {"userId": "b-1", "event": "Signed Up", "timestamp": "yesterday"},
         "timestamp: "),
        ("/v1/track", {"userId": "b-1", "event": "Signed Up",
                       "timestamp": "2026-11-03T10:00:00"}, "timestamp: needs a timezone"),
        ("/v1/track", {"userId": "b-1", "event": "Signed Up",
                       "timestamp": "2027-01-01T00:00:00Z"}, "timestamp: "),
        ("/v1/track", {"userId": "b-1"}, "event: "),
        ("/v1/track", {"userId": "b-1", "event": "2024"}, "event: '2024' does not make"),
        ("/v1/track", {"userId": "b-1", "event": "X", "properties": {"note": "n" * 3000}},
         "properties.note: at most 2000 characters"),
        ("/v1/identify", {"userId": "b-1", "context": {"timezone": "Mars/Olympus"}},
         "context.timezone: "),
        ("/v1/identify", {"userId": "b-1", "context": {"locale": "english please"}},
         "context.locale: "),
        ("/v1/alias", {"userId": "b-1"}, "previousId: "),
        ("/v1/identify", {"userId": "b-1", "context": {"messaging_subscriptions": [
            {"key": "not-an-email", "type": "EMAIL", "status": "SUBSCRIBED"}]}},
         "context.messaging_subscriptions.0.key: "),
        ("/v1/track", {"userId": "", "event": "X"}, "userId: "),
        ("/v1/identify", {"userId": "b-1", "traits": {"intent_scores": {"purchase": 1}}},
         "traits.intent_scores: reserved"),
    ]
    for path, body, expected in cases:
        response = api.post(path, json=body)
        assert response.status_code == 422, (body, response.text)
        assert expected in response.json()["detail"], (body, response.json())
        assert response.json()["status"] == "rejected"
    assert container.store.counts()["customers"] == 0
    assert api.post("/v1/track", content=b"{not json").status_code == 422
    assert api.post("/v1/track", json=[{"userId": "b-1"}]).status_code == 422


def test_batch_reports_each_message(served: tuple[Container, str]) -> None:
    container, base = served
    api = writer(base)
    batch = [
        {"type": "identify", "userId": "p-1", "traits": {"email": "pat@example.com"},
         "messageId": "b-1"},
        {"type": "identify", "userId": "p-2", "traits": {"email": "pat@@example"},
         "messageId": "b-2"},
        {"type": "track", "userId": "p-1", "messageId": "b-3"},
        {"type": "track", "userId": "p-1", "event": "Trial Started", "messageId": "b-4"},
        {"type": "launch", "userId": "p-1", "messageId": "b-5"},
        "not an object",
        {"type": "page", "userId": "p-1", "name": "Pricing", "messageId": "b-1-page"},
        {"type": "track", "userId": "p-1", "event": "Trial Started", "messageId": "b-4"},
    ]
    response = api.post("/v1/batch", json={"batch": batch,
                                           "sentAt": "2026-11-03T15:00:00Z"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["status"] for r in body["results"]] == [
        "accepted", "rejected", "rejected", "accepted", "rejected", "rejected", "accepted",
        "duplicate"]
    assert (body["accepted"], body["rejected"], body["duplicates"]) == (3, 4, 1)
    errors = [r["errors"] for r in body["results"]]
    assert errors[1][0].startswith("traits.email: ")
    assert errors[2] == ["event: Field required"]
    assert errors[4][0].startswith("type: must be one of identify")
    assert errors[5] == ["must be an object"]
    pat = profile_of(container, "email", "pat@example.com")
    assert body["results"][3]["event_type"] == "trial_started"
    assert body["results"][3]["stage"] == "decision"
    assert pat.lifecycle_stage == "decision"
    assert [e.id for e in events_of(container, pat.id)] == ["b-1-page", "b-4"]
    assert container.store.find_customer(Identity(kind="external_id", value="p-2")) is None

    # nothing in it applies: a 422 with every message's reasons (the clients do not retry)
    none = api.post("/v1/batch", json={"batch": [{"type": "track", "event": "X"}]})
    assert none.status_code == 422
    assert none.json()["results"][0]["errors"] == ["give userId or anonymousId: a message is "
                                                   "about someone"]
    # a malformed envelope names its field
    for envelope, field in (({"batch": {"type": "track"}}, "batch"), ({"batch": []}, "batch"),
                            ({"batch": [{}], "sentAt": "soon"}, "sentAt")):
        bad = api.post("/v1/batch", json=envelope)
        assert bad.status_code == 422, envelope
        assert bad.json()["detail"].startswith(f"{field}: "), bad.json()
    # a compressed body that is not gzip
    broken = api.post("/v1/batch", content=b"\x1f\x8b not gzip",
                      headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert broken.status_code == 400
    assert broken.json()["detail"].startswith("body: not valid gzip")


def test_batch_context_skew_and_gzip(served: tuple[Container, str], clock: FixedClock) -> None:
    """A device whose clock runs a year ahead: its events land at the server's time (less
    the time they waited on the device); the batch's context applies to each message."""
    container, base = served
    ahead = clock.now() + timedelta(days=365)
    batch = {
        "sentAt": ahead.isoformat(),
        "context": {"timezone": "Europe/Berlin", "locale": "de-DE"},
        "batch": [
            {"type": "identify", "anonymousId": "d-1", "messageId": "sk-1",
             "timestamp": (ahead - timedelta(minutes=10)).isoformat(),
             "traits": {"email": "kim@example.de"}},
            {"type": "track", "anonymousId": "d-1", "event": "Cart Abandoned",
             "messageId": "sk-2", "timestamp": (ahead - timedelta(minutes=10)).isoformat(),
             "context": {"consent": {"categoryPreferences": {"Marketing": False}}}},
        ],
    }
    response = writer(base).post(
        "/v1/batch", content=gzip.compress(json.dumps(batch).encode()),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == ["accepted", "accepted"]
    kim = profile_of(container, "anonymous_id", "d-1")
    assert (kim.timezone, kim.locale) == ("Europe/Berlin", "de-DE")
    [event] = events_of(container, kim.id)
    assert event.occurred_at == clock.now() - timedelta(minutes=10)
    # a general withdrawal of marketing consent: every channel, recorded once each
    assert {c: kim.consent_for(c, "marketing") for c in ("email", "sms", "whatsapp",
                                                         "web_chat")} == dict.fromkeys(
        ("email", "sms", "whatsapp", "web_chat"), "revoked")
    evidence = {r["evidence"] for r in container.store.consent_ledger(kim.id)}
    assert evidence == {"messageId sk-2: context.consent.categoryPreferences.marketing"}
    assert fired(container, kim.id) == ["cart_abandonment"]
