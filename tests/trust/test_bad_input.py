"""Promise: bad input gets a clear 4xx naming the field, never a 500, and nothing of it is
stored.

Caught: a NUL character (U+0000) anywhere in a request (a message, an event, a Twilio webhook,
the anonymous web chat, a query parameter) was a 500 on PostgreSQL, which refuses it in text
and JSONB; ``offset`` beyond 64 bits was a 500; ``/v1/events`` stored a 10 MB property. Now
a NUL is a 422 naming where it is (nothing runs), a body over ``max_body_bytes`` is a 413,
and an event over the per-field limits is rejected on its own, naming the field, while the
rest of its batch is accepted. Each case ends with a good request on the same connection.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from journey.event_input import (
    MAX_PROPERTIES_BYTES,
    MAX_PROPERTY_CHARS,
    MAX_PROPERTY_DEPTH,
    MAX_PROPERTY_ENTRIES,
)
from tests.providers import FakeTwilio
from tests.server import client
from tests.trust.conftest import TWILIO_INBOUND, Served, ServeFactory, twilio_settings

NUL = "\u0000"
EMPTY = {"customers": 0, "messages": 0, "decisions": 0, "outbox": 0, "handoffs": 0,
         "events": 0}
AT = "2026-11-03T14:00:00Z"


def event(eid: str, **properties: Any) -> dict[str, Any]:
    return {"id": eid, "type": "page_view", "customer": {"email": "dana@example.com"},
            "properties": properties, "occurred_at": AT}


def message(text: str = "hello there", **customer: Any) -> dict[str, Any]:
    return {"channel": "email", "customer": {"email": "dana@example.com", **customer},
            "text": text}


def assert_nul_refused(response: httpx.Response, where: str) -> None:
    """A 422 in the project's error shape, naming ``where``."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["detail"].startswith(f"{where}: ") or body["detail"].startswith(f"{where} ")
    assert "NUL character (U+0000)" in body["detail"], body
    assert body["errors"][0]["type"] == "value_error.nul"
    assert isinstance(body["errors"][0]["loc"], list)


@pytest.fixture
def served(serve: ServeFactory) -> Served:
    return serve()


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with client(served.base) as c:
        yield c


# --- NUL characters -------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "where"), [
    (message("hi" + NUL + "there"), "body.text"),
    (message(name="Da" + NUL + "na"), "body.customer.name"),
    ({**message(), "customer": {"email": "dana@example.com", "na" + NUL + "me": "x"}},
     "body.customer"),
])
def test_a_nul_in_a_message_is_a_422_naming_it_and_nothing_is_stored(
    served: Served, http: httpx.Client, body: dict[str, Any], where: str
) -> None:
    assert_nul_refused(http.post("/v1/messages", json=body), where)
    assert served.container.store.counts() == EMPTY
    good = http.post("/v1/messages", json=message())
    assert good.status_code == 200, good.text
    assert served.container.store.counts()["messages"] >= 1


def test_a_nul_in_a_json_key_is_named_as_a_key(http: httpx.Client) -> None:
    body = {**message(), "customer": {"email": "dana@example.com", "na" + NUL + "me": "x"}}
    response = http.post("/v1/messages", json=body)
    assert_nul_refused(response, "body.customer")
    detail = response.json()["detail"]
    assert "key" in detail and "\\u0000" in detail and NUL not in detail  # shown escaped


@pytest.mark.parametrize(("bad", "where"), [
    (event("e2", note="a" + NUL + "b"), "body.events[1].properties.note"),
    (event("e2", **{"no" + NUL + "te": "x"}), "body.events[1].properties"),
    ({**event("e2"), "traits": {"plan": NUL}}, "body.events[1].traits.plan"),
])
def test_a_nul_in_an_event_refuses_the_request_naming_it(
    served: Served, http: httpx.Client, bad: dict[str, Any], where: str
) -> None:
    """The whole request is refused (the middleware answers before the route): nothing of it
    is stored, so resending the batch without the NUL loses nothing."""
    assert_nul_refused(http.post("/v1/events", json={"events": [event("e1"), bad]}), where)
    assert served.container.store.counts() == EMPTY
    good = http.post("/v1/events", json={"events": [event("e1")]})
    assert good.status_code == 200 and good.json()["accepted"] == 1, good.text


def test_a_nul_in_a_signed_twilio_body_is_a_422_naming_body(
    serve: ServeFactory, twilio: FakeTwilio
) -> None:
    served = serve(**twilio_settings(twilio))
    url = served.base + TWILIO_INBOUND
    assert_nul_refused(twilio.send_inbound(url, "+14155550100", "stop" + NUL), "body.Body")
    assert served.container.store.counts() == EMPTY
    assert twilio.send_inbound(url, "+14155550100", "hello").status_code == 200
    assert served.container.store.counts()["messages"] == 1


def test_a_nul_in_an_anonymous_web_chat_message_is_a_422(served: Served) -> None:
    with httpx.Client(base_url=served.base, timeout=30) as http:
        session = http.post("/v1/webchat/sessions").json()
        url = f"/v1/webchat/{session['session_id']}/messages"
        headers = {"X-Session-Token": session["token"]}
        assert_nul_refused(http.post(url, json={"text": "hi" + NUL}, headers=headers),
                           "body.text")
        assert served.container.store.counts() == EMPTY
        assert http.post(url, json={"text": "hi"}, headers=headers).status_code == 202
    assert served.container.store.counts()["messages"] == 1


@pytest.mark.parametrize(("path", "where"), [
    ("/v1/decisions?customer_id=%00", "query.customer_id"),
    ("/v1/decisions?reason=a%00b&limit=5", "query.reason"),
    ("/v1/customers/cus%00x", "path"),
    ("/v1/approvals?customer_id=%00", "query.customer_id"),
])
def test_a_nul_in_the_url_is_a_422_naming_it(
    http: httpx.Client, path: str, where: str
) -> None:
    assert_nul_refused(http.get(path), where)
    assert http.get("/v1/decisions?customer_id=cus_1").status_code == 200


def test_a_nul_in_a_form_field_is_named(served: Served) -> None:
    """Any form, even on a route that needs no key: the console's sign-in."""
    with httpx.Client(base_url=served.base, timeout=30) as http:
        response = http.post("/console/login", data={"key": "x" + NUL})
    assert_nul_refused(response, "body.key")


BOUNDARY = "b0undary"
BASE64_PART = (  # a multipart field whose value travels base64-encoded: "hi\0"
    f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"from\"\r\n\r\na@b.example\r\n"
    f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"stripped-text\"\r\n"
    f"Content-Transfer-Encoding: base64\r\n\r\naGkA\r\n--{BOUNDARY}--\r\n"
).encode()


@pytest.mark.parametrize(("path", "request_args", "where"), [
    # no content type: FastAPI reads the body as JSON
    ("/v1/messages", {"content": json.dumps(message("x" + NUL)).encode()}, "body.text"),
    # the signed webhook reads JSON whatever the content type says
    ("/v1/channels/webhook/inbound", {"content": b'{"text": "\\u0000"}',
                                      "headers": {"content-type": "text/plain"}}, "body.text"),
    ("/v1/channels/email/inbound", {"data": {"from": "a@b.example", "stripped-text": "hi" + NUL},
                                    "files": {"attachment": ("a.bin", b"\x00\x01")}},
     "body.stripped-text"),
    ("/v1/channels/email/inbound", {
        "content": BASE64_PART,
        "headers": {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}},
     "body.stripped-text"),
    ("/v1/webchat/sessions", {"json": {"name": "Da" + NUL + "na"}}, "body.name"),
])
def test_a_nul_is_found_however_the_body_is_encoded(
    served: Served, http: httpx.Client, path: str, request_args: dict[str, Any], where: str
) -> None:
    assert_nul_refused(http.post(path, **request_args), where)
    assert served.container.store.counts() == EMPTY


def test_a_file_in_a_multipart_form_may_hold_nul_bytes(
    served: Served, http: httpx.Client
) -> None:
    response = http.post("/v1/channels/email/inbound",
                         data={"from": "a@b.example", "stripped-text": "hello"},
                         files={"attachment": ("a.bin", b"\x00\x01")})
    assert response.status_code == 200, response.text
    assert served.container.store.counts()["messages"] == 1


def test_an_escaped_backslash_u0000_is_text_not_a_nul(
    served: Served, http: httpx.Client
) -> None:
    """``\\\\u0000`` in JSON is the six characters \\u0000: allowed."""
    body = json.dumps(message("a literal \\u0000 in text")).encode()
    assert b"\\\\u0000" in body
    response = http.post("/v1/messages", content=body,
                         headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text


# --- numbers and sizes -------------------------------------------------------------------------


@pytest.mark.parametrize("query", [
    f"offset={2**70}", f"offset={2**63}", "limit=100000000000000000000000",
])
def test_huge_integers_in_a_query_are_a_422_naming_the_parameter(
    http: httpx.Client, query: str
) -> None:
    response = http.get(f"/v1/decisions?{query}")
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"query.{query.split('=')[0]}:")
    assert http.get("/v1/decisions?offset=10").status_code == 200


def test_the_outbox_replay_takes_a_bounded_list_of_ids(http: httpx.Client) -> None:
    response = http.post("/v1/outbox/replay", json={"ids": [f"out_{i}" for i in range(70000)]})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("ids:")
    assert http.post("/v1/outbox/replay", json={"ids": ["out_1"]}).json() == {"replayed": 0}


def test_a_body_over_the_limit_is_a_413_and_nothing_is_stored(
    served: Served, http: httpx.Client
) -> None:
    limit = served.container.settings.max_body_bytes
    huge = {"events": [event("e1", note="x" * 10_000_000)]}
    response = http.post("/v1/events", json=huge)
    assert response.status_code == 413, response.text[:300]
    assert str(limit) in response.json()["detail"]
    assert served.container.store.counts() == EMPTY

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        data = json.dumps(huge).encode()
        for start in range(0, len(data), 65536):
            yield data[start:start + 65536]

    streamed = http.post("/v1/events", content=chunks(),
                         headers={"content-type": "application/json"})
    assert streamed.status_code == 413, streamed.text[:300]
    assert served.container.store.counts() == EMPTY
    good = http.post("/v1/events", json={"events": [event("e1", note="x" * 1000)]})
    assert good.status_code == 200 and good.json()["accepted"] == 1, good.text


def _rejected(http: httpx.Client, bad: dict[str, Any]) -> list[str]:
    """Post ``[good, bad]``: the good one is accepted; the bad one's errors."""
    response = http.post("/v1/events", json={"events": [event("ok"), bad]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected"], results
    errors: list[str] = results[1]["errors"]
    return errors


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


@pytest.mark.parametrize(("bad", "error"), [
    (event("e2", note="x" * (MAX_PROPERTY_CHARS + 1)),
     f"properties.note: at most {MAX_PROPERTY_CHARS} characters"),
    (event("e2", tags=["a", "x" * (MAX_PROPERTY_CHARS + 1)]),
     f"properties.tags.1: at most {MAX_PROPERTY_CHARS} characters"),
    ({**event("e2"), "traits": {"bio": "x" * (MAX_PROPERTY_CHARS + 1)}},
     f"traits.bio: at most {MAX_PROPERTY_CHARS} characters"),
    (event("e2", deep=_nested(MAX_PROPERTY_DEPTH)),
     f"properties.deep.n.n.n.n: nested deeper than {MAX_PROPERTY_DEPTH} levels"),
    (event("e2", **{f"k{i}": i for i in range(MAX_PROPERTY_ENTRIES + 1)}),
     f"properties: at most {MAX_PROPERTY_ENTRIES} entries"),
    (event("e2", items=list(range(MAX_PROPERTY_ENTRIES + 1))),
     f"properties.items: at most {MAX_PROPERTY_ENTRIES} entries"),
    (event("e2", **{f"k{i}": "x" * 1900 for i in range(10)}),
     f"properties: at most {MAX_PROPERTIES_BYTES} bytes as JSON"),
    ({**event("e2"), "traits": {f"t{i}": i for i in range(MAX_PROPERTY_ENTRIES + 1)}},
     f"traits: at most {MAX_PROPERTY_ENTRIES} entries"),
])
def test_an_event_over_a_field_limit_is_rejected_naming_it_and_the_batch_goes_on(
    served: Served, http: httpx.Client, bad: dict[str, Any], error: str
) -> None:
    assert _rejected(http, bad) == [error]
    assert served.container.store.counts()["events"] == 1


def test_an_event_at_the_limits_is_accepted(served: Served, http: httpx.Client) -> None:
    nested = _nested(MAX_PROPERTY_DEPTH - 1)
    props = {"note": "x" * MAX_PROPERTY_CHARS, "deep": nested}
    response = http.post("/v1/events", json={"events": [event("e1", **props)]})
    assert response.status_code == 200 and response.json()["accepted"] == 1, response.text


@pytest.mark.parametrize(("raw", "error"), [
    ('{"x": NaN}', "properties.x: must be a finite number"),
    ('{"x": [1, Infinity]}', "properties.x.1: must be a finite number"),
    ('{"x": 1e400}', "properties.x: must be a finite number"),
])
def test_a_non_finite_number_in_an_event_is_rejected(
    served: Served, http: httpx.Client, raw: str, error: str
) -> None:
    """Python's JSON reader takes NaN and Infinity; PostgreSQL's JSONB does not."""
    good = json.dumps(event("ok"))
    bad = json.dumps(event("e2"))[:-1].replace('"properties": {}', f'"properties": {raw}') + "}"
    response = http.post("/v1/events", content=f'{{"events": [{good}, {bad}]}}',
                         headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected"], results
    assert results[1]["errors"] == [error]
    customer = served.container.store.counts()
    assert customer["events"] == 1
    profile_id = results[0]["customer_id"]
    assert http.get(f"/v1/customers/{profile_id}").status_code == 200


# --- streams still stream ---------------------------------------------------------------------


def test_the_web_chat_stream_still_streams(served: Served) -> None:
    with httpx.Client(base_url=served.base, timeout=10) as http:
        session = http.post("/v1/webchat/sessions").json()
        url = f"/v1/webchat/{session['session_id']}/stream"
        with http.stream("GET", url, params={"token": session["token"]}) as response:
            assert response.status_code == 200
            assert next(response.iter_lines()) == "retry: 2000"


# --- signed webhooks: what is checked before the signature ------------------------------------


@pytest.mark.parametrize("timestamp", ["²", "9" * 5000])
def test_an_odd_mailgun_timestamp_is_a_403_not_a_500(
    serve: ServeFactory, timestamp: str
) -> None:
    served = serve(email_signing_key="mg-key")
    response = httpx.post(f"{served.base}/v1/channels/email/inbound", data={
        "from": "dana@example.com", "stripped-text": "hi", "timestamp": timestamp,
        "token": "t" * 50, "signature": "0" * 64})
    assert response.status_code == 403, response.text
    assert "timestamp" in response.json()["detail"]
    assert served.container.store.counts() == EMPTY


@pytest.mark.parametrize("t", ["²", "9" * 5000])
def test_an_odd_generic_webhook_timestamp_is_a_403_not_a_500(
    serve: ServeFactory, t: str
) -> None:
    served = serve(webhook_secret="wh-secret")
    response = httpx.post(f"{served.base}/v1/channels/webhook/inbound",
                          content=json.dumps(message()).encode(),
                          headers={"Content-Type": "application/json",
                                   "X-Journey-Signature": f"t={t},v1={'0' * 64}".encode()})
    assert response.status_code == 403, response.text
    assert served.container.store.counts() == EMPTY


def test_a_deeply_nested_json_webhook_body_is_a_422(serve: ServeFactory) -> None:
    served = serve(email_signing_key="mg-key")
    response = httpx.post(f"{served.base}/v1/channels/email/inbound",
                          content=b"[" * 100_000, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert "JSON" in response.json()["detail"]
