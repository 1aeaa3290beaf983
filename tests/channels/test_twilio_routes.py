"""Twilio's webhooks on the real server: signatures checked before anything is stored."""

from __future__ import annotations

from datetime import timedelta

import httpx

from api.routes.channels import EMPTY_TWIML
from channels.base import Delivery
from channels.twilio import TwilioAdapter, twilio_signature
from core.domain import Identity
from journey.runtime import Container
from tests.channels.conftest import TWILIO_INBOUND as INBOUND
from tests.channels.conftest import ServeFactory, twilio_settings
from tests.providers import FakeTwilio

STATUS = "/v1/channels/twilio/status"


def nothing_stored(container: Container) -> bool:
    counts = container.store.counts()
    return counts["messages"] == 0 and counts["customers"] == 0 and (
        container.store.jobs.list(kind="turn") == []
    )


def test_unconfigured_twilio_is_503(serve: ServeFactory, twilio: FakeTwilio) -> None:
    served = serve()
    response = twilio.send_inbound(served.base + INBOUND, "+14155550100", "hi")
    assert response.status_code == 503
    assert response.json()["detail"].startswith("Twilio is not configured")
    assert nothing_stored(served.container)


def test_unsigned_and_forged_webhooks_are_refused_and_nothing_is_stored(
    serve: ServeFactory, twilio: FakeTwilio
) -> None:
    served = serve(**twilio_settings(twilio))
    url = served.base + INBOUND
    fields = {"MessageSid": "SM1", "From": "+14155550100", "To": "+14155550199",
              "Body": "STOP texting me"}
    unsigned = httpx.post(url, data=fields)
    assert unsigned.status_code == 403
    assert unsigned.json() == {"detail": "missing X-Twilio-Signature header"}

    forged = httpx.post(url, data=fields,
                        headers={"X-Twilio-Signature": twilio_signature("guess", url, fields)})
    assert forged.status_code == 403
    assert forged.json()["detail"].startswith("invalid X-Twilio-Signature")

    # a valid signature over different fields does not sign these
    tampered = httpx.post(url, data={**fields, "Body": "hello"},
                          headers={"X-Twilio-Signature": twilio_signature("tw-token", url, fields)})
    assert tampered.status_code == 403
    odd = httpx.post(url, json={"From": ["+1", 2], "Body": {"x": 1}},
                     headers={"X-Twilio-Signature": "AAAA"})
    assert odd.status_code == 403
    assert nothing_stored(served.container)


def test_a_signed_sms_is_stored_once_and_its_turn_queued(
    serve: ServeFactory, twilio: FakeTwilio
) -> None:
    served = serve(**twilio_settings(twilio))
    container = served.container
    url = served.base + INBOUND
    first = twilio.send_inbound(url, "+14155550100", "Where is my order?", sid="SM100")
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/xml")
    assert first.text == EMPTY_TWIML
    # Twilio retries the webhook: same answer, nothing new
    again = twilio.send_inbound(url, "+14155550100", "Where is my order?", sid="SM100")
    assert (again.status_code, again.text) == (200, EMPTY_TWIML)

    [message] = container.store.messages()
    assert (message.channel, message.direction, message.text, message.external_id) == (
        "sms", "inbound", "Where is my order?", "SM100")
    assert message.meta == {"twilio": {"to": "+14155550199", "num_media": "0"}}
    customer = container.store.find_customer(Identity(kind="phone", value="+14155550100"))
    assert customer is not None and customer.id == message.customer_id
    [job] = container.store.jobs.list(kind="turn")
    assert job.payload == {"message_id": message.id}
    assert job.status == "pending"


def test_whatsapp_is_recognised_by_its_prefix(serve: ServeFactory, twilio: FakeTwilio) -> None:
    served = serve(**twilio_settings(twilio))
    response = twilio.send_inbound(served.base + INBOUND, "whatsapp:+447700900123", "Olá",
                                   to="whatsapp:+14155550198", ProfileName="Joana")
    assert response.status_code == 200
    [message] = served.container.store.messages()
    assert message.channel == "whatsapp"
    customer = served.container.store.get_customer(message.customer_id)
    assert customer is not None
    assert customer.name == "Joana"
    assert customer.identity("phone") == "+447700900123"


def test_media_without_text_is_acknowledged_and_not_stored(
    serve: ServeFactory, twilio: FakeTwilio
) -> None:
    served = serve(**twilio_settings(twilio))
    response = twilio.send_inbound(served.base + INBOUND, "+14155550100", "", NumMedia="1",
                                   MediaUrl0="https://api.twilio.com/media/ME1")
    assert (response.status_code, response.text) == (200, EMPTY_TWIML)
    assert nothing_stored(served.container)


def test_a_signed_webhook_without_a_sender_is_422(serve: ServeFactory, twilio: FakeTwilio) -> None:
    served = serve(**twilio_settings(twilio))
    response = twilio.post_signed(served.base + INBOUND, {"Body": "hi", "MessageSid": "SM1"})
    assert response.status_code == 422
    assert response.json()["detail"] == "a Twilio message needs From and MessageSid"


def test_behind_a_proxy_the_public_url_is_what_is_signed(
    serve: ServeFactory, twilio: FakeTwilio
) -> None:
    served = serve(**twilio_settings(twilio, public_url="https://chat.acme.example/"))
    fields = {"MessageSid": "SM7", "From": "+14155550100", "To": "+14155550199", "Body": "hi"}
    as_twilio_saw_it = twilio_signature(
        "tw-token", "https://chat.acme.example" + INBOUND, fields
    )
    local = twilio_signature("tw-token", served.base + INBOUND, fields)
    refused = httpx.post(served.base + INBOUND, data=fields,
                         headers={"X-Twilio-Signature": local})
    assert refused.status_code == 403
    accepted = httpx.post(served.base + INBOUND, data=fields,
                          headers={"X-Twilio-Signature": as_twilio_saw_it})
    assert accepted.status_code == 200
    assert len(served.container.store.messages()) == 1


def test_status_callbacks_update_the_outbox(serve: ServeFactory, twilio: FakeTwilio) -> None:
    """Inbound SMS → the turn's SMS reply → sent through Twilio → Twilio's callback."""
    served = serve(**twilio_settings(twilio, public_url="{base}"))
    container = served.container
    twilio.send_inbound(served.base + INBOUND, "+14155550100", "What does the Growth plan "
                        "include?", sid="SM200")
    [message] = container.store.messages()
    container.orchestrator.run_queued_turn(message.id)
    [row] = [r for r in container.store.outbox_queue.claim(limit=10, lease=timedelta(seconds=60))
             if r.channel == "sms"]
    outbound = container.store.get_message(row.message_id)
    assert outbound is not None
    adapter = TwilioAdapter(container.settings, "sms")
    result = adapter.send(Delivery(
        outbox_id=row.id, message_id=row.message_id, idempotency_key=row.idempotency_key,
        customer_id=row.customer_id, conversation_id=outbound.conversation_id, channel="sms",
        address=row.address, text=row.text, purpose="service", is_reply=True,
    ))
    adapter.close()
    assert container.store.outbox_queue.mark_sent(
        row.id, provider_message_id=result.provider_message_id,
        provider_status=result.provider_status, meta=result.meta)
    sid = result.provider_message_id
    assert sid is not None

    delivered = twilio.report_status(sid, "delivered")
    assert delivered.status_code == 200
    assert delivered.json() == {"message_sid": sid, "status": "delivered", "updated": True,
                                "detail": "recorded"}
    stored = container.store.outbox_queue.get(row.id)
    assert stored is not None and stored.provider_status == "delivered"

    failed = twilio.report_status(sid, "undelivered", error_code="30003")
    assert failed.json()["updated"] is True
    stored = container.store.outbox_queue.get(row.id)
    assert stored is not None
    assert (stored.provider_status, stored.last_error) == ("undelivered",
                                                           "Twilio error 30003")

    unknown = twilio.report_status("SMunknown", "delivered", url=served.base + STATUS)
    assert unknown.status_code == 200
    assert unknown.json()["updated"] is False
    assert "no outbound message has the sid SMunknown" in unknown.json()["detail"]

    unsigned = httpx.post(served.base + STATUS, data={"MessageSid": sid,
                                                      "MessageStatus": "failed"})
    assert unsigned.status_code == 403
    stored = container.store.outbox_queue.get(row.id)
    assert stored is not None and stored.provider_status == "undelivered"


def test_a_signed_message_with_an_overlong_sender_is_422_and_nothing_is_stored(
    serve: ServeFactory, twilio: FakeTwilio
) -> None:
    """The provider's fields go through the same validation as the API's: a 'From' longer than
    a phone identity may be is a 422 naming it, not a 500."""
    served = serve(**twilio_settings(twilio))
    response = twilio.send_inbound(served.base + INBOUND, "+1" + "4" * 60, "hi")
    assert response.status_code == 422
    assert response.json()["detail"].startswith("customer.phone:")
    assert nothing_stored(served.container)
