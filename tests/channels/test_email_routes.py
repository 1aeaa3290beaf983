"""Inbound email (Mailgun-style) and the generic signed webhook on the real server."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx

from channels.webhook import sign_webhook
from core.domain import Identity
from journey.runtime import Container
from tests.channels.conftest import Served, ServeFactory

EMAIL = "/v1/channels/email/inbound"
WEBHOOK = "/v1/channels/webhook/inbound"
KEY = "mg-signing-key"


def now(container: Container) -> int:
    return int(container.store.clock.now().timestamp())


def mailgun_signature(timestamp: int, token: str = "tok-1", key: str = KEY) -> dict[str, str]:
    digest = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"timestamp": str(timestamp), "token": token, "signature": digest}


def email_fields(**overrides: str) -> dict[str, str]:
    fields = {
        "sender": "dana@northwind.example",
        "from": "Dana Scully <Dana@Northwind.example>",
        "recipient": "support@acme.example",
        "subject": "Re: Your quote",
        "body-plain": "Sounds good.\n\n> On Monday you wrote:\n> Here is your quote",
        "stripped-text": "Sounds good.",
        "Message-Id": "<CAF=reply-1@mail.northwind.example>",
        "In-Reply-To": "<out_0007@journey.local>",
        "References": "<root@mail.northwind.example> <out_0007@journey.local>",
    }
    return {**fields, **overrides}


def signed_email(served: Served, **overrides: str) -> httpx.Response:
    return httpx.post(served.base + EMAIL, data={
        **email_fields(**overrides), **mailgun_signature(now(served.container))
    })


def test_a_signed_email_is_stored_with_its_thread(serve: ServeFactory) -> None:
    served = serve(email_signing_key=KEY)
    container = served.container
    response = signed_email(served)
    assert response.status_code == 200
    accepted = response.json()
    assert accepted["duplicate"] is False and accepted["job_id"]

    [message] = container.store.messages()
    assert (message.id, message.channel, message.text) == (
        accepted["message_id"], "email", "Sounds good.")
    assert message.external_id == "<CAF=reply-1@mail.northwind.example>"
    assert message.meta == {"email": {
        "subject": "Re: Your quote",
        "message_id": "<CAF=reply-1@mail.northwind.example>",
        "in_reply_to": "<out_0007@journey.local>",
        "references": ["<root@mail.northwind.example>", "<out_0007@journey.local>"],
    }}
    customer = container.store.find_customer(Identity(kind="email",
                                                      value="dana@northwind.example"))
    assert customer is not None and customer.name == "Dana Scully"
    assert [j.payload for j in container.store.jobs.list(kind="turn")] == [
        {"message_id": message.id}]

    # the same signature again is a replay, refused (tests/trust/test_webhook_replays.py)
    assert signed_email(served).status_code == 403
    # Mailgun delivers it again under a new signature: the same Message-Id is stored once
    again = httpx.post(served.base + EMAIL, data={
        **email_fields(), **mailgun_signature(now(container), token="tok-2")
    })
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["message_id"] == message.id
    assert len(container.store.messages()) == 1


def test_multipart_and_json_bodies_are_read_too(serve: ServeFactory) -> None:
    served = serve(email_signing_key=KEY)
    ts = now(served.container)
    multipart = httpx.post(
        served.base + EMAIL,
        data={**email_fields(**{"Message-Id": "<m1@x>", "stripped-text": ""}),
              **mailgun_signature(ts)},
        files={"attachment-1": ("quote.pdf", b"%PDF-1.4", "application/pdf")},
    )
    assert multipart.status_code == 200, multipart.text
    nested = {**email_fields(**{"Message-Id": "<m2@x>"}),
              "signature": mailgun_signature(ts, token="tok-2")}
    as_json = httpx.post(served.base + EMAIL, json=nested)
    assert as_json.status_code == 200, as_json.text
    first, second = served.container.store.messages()
    # no stripped text: the whole plain body
    assert first.text.startswith("Sounds good.\n\n> On Monday you wrote:")
    assert second.text == "Sounds good."


def test_a_long_email_is_cut_not_refused(serve: ServeFactory) -> None:
    served = serve(email_signing_key=KEY)
    response = signed_email(served, **{"stripped-text": "word " * 1000})
    assert response.status_code == 200
    [message] = served.container.store.messages()
    assert len(message.text) <= 4000
    assert message.meta["email"]["truncated_from"] == len(("word " * 1000).strip())


def test_bad_or_missing_signatures_are_refused_before_anything_is_stored(
    serve: ServeFactory,
) -> None:
    served = serve(email_signing_key=KEY)
    ts = now(served.container)
    cases: list[tuple[dict[str, str], str]] = [
        ({}, "missing Mailgun signature: timestamp, token, signature"),
        (mailgun_signature(ts, key="wrong"), "invalid Mailgun signature"),
        ({**mailgun_signature(ts), "token": "another"}, "invalid Mailgun signature"),
        (mailgun_signature(ts - 301), "stale Mailgun signature timestamp"),
        (mailgun_signature(ts + 301), "stale Mailgun signature timestamp"),
    ]
    for signature, detail in cases:
        response = httpx.post(served.base + EMAIL, data={**email_fields(), **signature},
                              headers={"Authorization": "Bearer test-admin"})
        assert (response.status_code, response.json()["detail"]) == (403, detail)
    assert served.container.store.counts()["messages"] == 0


def test_without_a_signing_key_an_api_key_is_required(serve: ServeFactory) -> None:
    served = serve()
    url = served.base + EMAIL
    missing = httpx.post(url, data=email_fields())
    assert missing.status_code == 401
    unknown = httpx.post(url, data=email_fields(), headers={"X-API-Key": "nope"})
    assert unknown.status_code == 401
    assert served.container.store.counts()["messages"] == 0
    ok = httpx.post(url, data=email_fields(), headers={"Authorization": "Bearer test-writer"})
    assert ok.status_code == 200
    assert served.container.store.counts()["messages"] == 1


def test_unusable_email_is_422(serve: ServeFactory) -> None:
    served = serve(email_signing_key=KEY)
    no_sender = signed_email(served, sender="", **{"from": "Dana"})
    assert no_sender.status_code == 422
    assert no_sender.json()["detail"] == (
        "no sender address: give 'from' or 'sender' as an email address")
    no_text = signed_email(served, **{"stripped-text": " ", "body-plain": ""})
    assert no_text.status_code == 422
    assert no_text.json()["detail"] == "no text: 'stripped-text' and 'body-plain' are empty"
    bad_json = httpx.post(served.base + EMAIL, content=b"{not json",
                          headers={"content-type": "application/json"})
    assert bad_json.status_code == 422
    assert served.container.store.counts()["messages"] == 0


# --- the generic webhook -----------------------------------------------------------------------


def signed_post(served: Served, payload: Any, secret: str = "wh-secret",
                t: int | None = None) -> httpx.Response:
    body = json.dumps(payload).encode()
    t = now(served.container) if t is None else t
    return httpx.post(served.base + WEBHOOK, content=body, headers={
        "content-type": "application/json",
        "X-Journey-Signature": sign_webhook(secret, body, t),
    })


MESSAGE = {"channel": "whatsapp", "customer": {"phone": "+447700900123", "name": "Joana"},
           "text": "Is the Growth plan monthly?", "external_id": "wamid.1"}


def test_the_generic_webhook_needs_a_secret(serve: ServeFactory) -> None:
    served = serve()
    response = signed_post(served, MESSAGE)
    assert response.status_code == 503
    assert "JOURNEY_WEBHOOK_SECRET" in response.json()["detail"]


def test_a_signed_generic_webhook_is_accepted_once(serve: ServeFactory) -> None:
    served = serve(webhook_secret="wh-secret")
    first = signed_post(served, MESSAGE)
    assert first.status_code == 200, first.text
    assert first.json()["duplicate"] is False
    # the same signature again is a replay (403); a new one for the same message is a duplicate
    assert signed_post(served, MESSAGE).status_code == 403
    again = signed_post(served, MESSAGE, t=now(served.container) - 1)
    assert again.json()["duplicate"] is True
    [message] = served.container.store.messages()
    assert (message.channel, message.text, message.external_id) == (
        "whatsapp", "Is the Growth plan monthly?", "wamid.1")
    assert len(served.container.store.jobs.list(kind="turn")) == 1


def test_the_generic_webhook_refuses_bad_signatures_and_bad_bodies(serve: ServeFactory) -> None:
    served = serve(webhook_secret="wh-secret")
    ts = now(served.container)
    unsigned = httpx.post(served.base + WEBHOOK, json=MESSAGE)
    assert (unsigned.status_code, unsigned.json()["detail"]) == (
        403, "missing X-Journey-Signature header")
    assert signed_post(served, MESSAGE, secret="guess").status_code == 403
    stale = signed_post(served, MESSAGE, t=ts - 600)
    assert stale.status_code == 403 and "stale" in stale.json()["detail"]
    assert served.container.store.counts()["messages"] == 0

    no_identity = signed_post(served, {**MESSAGE, "customer": {"email": "j@x.example"}})
    assert no_identity.status_code == 422
    assert "whatsapp messages need customer.phone" in no_identity.json()["detail"]
    not_json = httpx.post(served.base + WEBHOOK, content=b"nope", headers={
        "X-Journey-Signature": sign_webhook("wh-secret", b"nope", ts)})
    assert not_json.status_code == 422
    assert served.container.store.counts()["messages"] == 0


def test_an_overlong_sender_name_is_422_naming_it(serve: ServeFactory) -> None:
    served = serve(email_signing_key=KEY)
    response = signed_email(served, **{"from": f"{'D' * 300} <dana@example.com>"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("customer.name:")
    assert served.container.store.counts()["messages"] == 0
