"""Promise: a signed webhook is accepted once. A captured signature sent again (with the same
body, or with a new sender and text where the signature does not cover the body) is a 403 and
nothing is stored, in every process sharing the database.

Mailgun signs only ``timestamp + token``: its token is remembered for the signature's window.
The generic webhook signs ``t`` and the raw body: its canonical signature is remembered.
Twilio signs the URL and every field and dedupes by ``MessageSid`` (the message's external id),
so a replay with other fields fails the signature and an identical one is a duplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from typing import Any

import httpx
from sqlalchemy import text

from channels.twilio import twilio_signature
from channels.webhook import sign_webhook
from core.clock import FixedClock
from core.domain import Identity
from journey.runtime import Container
from tests.providers import FakeTwilio
from tests.trust.conftest import TWILIO_INBOUND, Served, ServeFactory, twilio_settings

EMAIL = "/v1/channels/email/inbound"
WEBHOOK = "/v1/channels/webhook/inbound"
KEY = "mg-signing-key"
SECRET = "wh-secret"
REPLAY = "this signature was already used: a replay is refused"
#: a generic webhook message without external_id: only the replay guard can stop a copy
NOTE = {"channel": "sms", "customer": {"phone": "+14155550123"}, "text": "Cancel my order"}


def _now(container: Container) -> int:
    return int(container.store.clock.now().timestamp())


def _mailgun(timestamp: int, token: str) -> dict[str, str]:
    digest = hmac.new(KEY.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"timestamp": str(timestamp), "token": token, "signature": digest}


def _email(sender: str, body: str, message_id: str) -> dict[str, str]:
    return {"from": sender, "recipient": "support@acme.example", "subject": "Hello",
            "stripped-text": body, "Message-Id": message_id}


def _post_email(served: Served, signature: dict[str, str], sender: str, body: str,
                message_id: str) -> httpx.Response:
    return httpx.post(served.base + EMAIL, data={**_email(sender, body, message_id),
                                                 **signature}, timeout=60)


def _signed(container: Container, payload: dict[str, Any],
            t: int | None = None) -> tuple[bytes, str]:
    body = json.dumps(payload).encode()
    return body, sign_webhook(SECRET, body, _now(container) if t is None else t)


def _post_webhook(served: Served, body: bytes, header: str) -> httpx.Response:
    return httpx.post(served.base + WEBHOOK, content=body, timeout=60, headers={
        "content-type": "application/json", "X-Journey-Signature": header})


def _receipts(container: Container) -> int:
    with container.store.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM webhook_receipts")).scalar_one())


def _codes(responses: list[httpx.Response]) -> list[int]:
    return [r.status_code for r in responses]


def test_a_captured_mailgun_signature_cannot_carry_a_new_sender(serve: ServeFactory) -> None:
    served = serve(email_signing_key=KEY)
    container = served.container
    signature = _mailgun(_now(container), "tok-captured")
    senders = ["dana@northwind.example", "mallory@evil.example", "eve@evil.example"]
    responses = [
        _post_email(served, signature, sender, f"message {i}", f"<m{i}@mail.example>")
        for i, sender in enumerate(senders)
    ]
    assert _codes(responses) == [200, 403, 403], [r.text for r in responses]
    assert [r.json()["detail"] for r in responses[1:]] == [REPLAY, REPLAY]
    counts = container.store.counts()
    assert (counts["customers"], counts["messages"]) == (1, 1)
    [message] = container.store.messages()
    assert message.text == "message 0"
    for forged in senders[1:]:
        assert container.store.find_customer(Identity(kind="email", value=forged)) is None
    assert len(container.store.jobs.list(kind="turn")) == 1


def test_a_replayed_generic_webhook_without_external_id_is_stored_once(
    serve: ServeFactory,
) -> None:
    served = serve(webhook_secret=SECRET)
    body, header = _signed(served.container, NOTE)
    responses = [_post_webhook(served, body, header) for _ in range(3)]
    assert _codes(responses) == [200, 403, 403], [r.text for r in responses]
    assert responses[1].json()["detail"] == REPLAY
    assert served.container.store.counts()["messages"] == 1
    assert len(served.container.store.jobs.list(kind="turn")) == 1


def test_a_reshaped_signature_header_is_still_a_replay(serve: ServeFactory) -> None:
    """The key is the signature we compute, not the header's text: extra ``v1`` values, spaces
    or another order do not make a captured signature new."""
    served = serve(webhook_secret=SECRET)
    body, header = _signed(served.container, NOTE)
    t, v1 = header.split(",")
    assert _post_webhook(served, body, header).status_code == 200
    for variant in (f"{header},v1={'0' * 64}", f"{v1},{t}", f"{t}, {v1}", f"{t} ,{v1}",
                    f"{t},v1={'f' * 64},{v1}"):
        replay = _post_webhook(served, body, variant)
        assert (replay.status_code, replay.json()["detail"]) == (403, REPLAY), variant
    assert served.container.store.counts()["messages"] == 1


def _race(send: Any, copies: int = 10) -> list[httpx.Response]:
    barrier = threading.Barrier(copies)
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        response = send()
        with lock:
            results.append(response)

    threads = [threading.Thread(target=one) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def test_concurrent_copies_of_one_signed_request_store_one_message(
    serve: ServeFactory,
) -> None:
    served = serve(webhook_secret=SECRET, email_signing_key=KEY)
    container = served.container
    body, header = _signed(container, NOTE)
    webhooks = _race(lambda: _post_webhook(served, body, header))
    assert sorted(_codes(webhooks)) == [200] + [403] * 9, [r.text for r in webhooks]

    signature = _mailgun(_now(container), "tok-race")
    counter = iter(range(100))
    emails = _race(lambda: _post_email(served, signature, f"user{next(counter)}@x.example",
                                       "hi", f"<race{next(counter)}@x>"))
    assert sorted(_codes(emails)) == [200] + [403] * 9, [r.text for r in emails]
    counts = container.store.counts()
    assert counts["messages"] == 2
    assert counts["customers"] == 2  # the webhook's phone and one email sender


def test_the_guard_holds_across_two_app_instances_on_one_database(
    serve: ServeFactory,
) -> None:
    first = serve(webhook_secret=SECRET, email_signing_key=KEY)
    second = serve(webhook_secret=SECRET, email_signing_key=KEY)
    assert first.container.store is not second.container.store
    body, header = _signed(first.container, NOTE)
    assert _post_webhook(first, body, header).status_code == 200
    replay = _post_webhook(second, body, header)
    assert (replay.status_code, replay.json()["detail"]) == (403, REPLAY)

    signature = _mailgun(_now(first.container), "tok-shared")
    assert _post_email(second, signature, "dana@northwind.example", "hi",
                       "<a@x>").status_code == 200
    forged = _post_email(first, signature, "mallory@evil.example", "hi", "<b@x>")
    assert (forged.status_code, forged.json()["detail"]) == (403, REPLAY)
    assert first.container.store.counts()["messages"] == 2


def test_a_new_signature_for_the_same_sender_is_accepted(
    serve: ServeFactory, clock: FixedClock
) -> None:
    served = serve(webhook_secret=SECRET, email_signing_key=KEY)
    container = served.container
    ts = _now(container)
    assert _post_email(served, _mailgun(ts, "tok-1"), "dana@northwind.example", "one",
                       "<1@x>").status_code == 200
    assert _post_email(served, _mailgun(ts, "tok-2"), "dana@northwind.example", "two",
                       "<2@x>").status_code == 200

    body, header = _signed(container, NOTE)
    assert _post_webhook(served, body, header).status_code == 200
    clock.advance(seconds=1)
    again, later = _signed(container, NOTE)
    assert later != header
    assert _post_webhook(served, again, later).status_code == 200
    counts = container.store.counts()
    assert (counts["customers"], counts["messages"]) == (2, 4)


def test_expired_receipts_are_purged(serve: ServeFactory, clock: FixedClock) -> None:
    served = serve(webhook_secret=SECRET, email_signing_key=KEY)
    container = served.container
    for n in range(3):
        signature = _mailgun(_now(container), f"tok-old-{n}")
        assert _post_email(served, signature, "dana@northwind.example", f"m{n}",
                           f"<old{n}@x>").status_code == 200
    body, header = _signed(container, NOTE)
    assert _post_webhook(served, body, header).status_code == 200
    assert _receipts(container) == 4

    # still remembered while a signature could be fresh on some process's clock
    clock.advance(seconds=301)
    assert _post_email(served, _mailgun(_now(container), "tok-mid"), "dana@northwind.example",
                       "mid", "<mid@x>").status_code == 200
    assert _receipts(container) == 5

    clock.advance(seconds=599)
    assert _post_email(served, _mailgun(_now(container), "tok-new"), "dana@northwind.example",
                       "new", "<new@x>").status_code == 200
    # the old email tokens are gone; the webhook's receipt waits for the next webhook
    assert _receipts(container) == 3
    body, header = _signed(container, NOTE)
    assert _post_webhook(served, body, header).status_code == 200
    assert _receipts(container) == 3


def test_a_failed_store_releases_the_signature_for_the_providers_retry(
    serve: ServeFactory,
) -> None:
    served = serve(webhook_secret=SECRET, email_signing_key=KEY)
    container = served.container
    orchestrator = container.orchestrator
    real_accept = orchestrator.accept
    failures = iter([RuntimeError("the database went away")])

    def flaky_accept(*args: Any, **kwargs: Any) -> Any:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real_accept(*args, **kwargs)

    orchestrator.accept = flaky_accept  # type: ignore[method-assign]
    signature = _mailgun(_now(container), "tok-retry")
    failed = _post_email(served, signature, "dana@northwind.example", "hi", "<r@x>")
    assert failed.status_code == 500
    assert container.store.counts()["messages"] == 0
    retried = _post_email(served, signature, "dana@northwind.example", "hi", "<r@x>")
    assert retried.status_code == 200, retried.text
    replay = _post_email(served, signature, "mallory@evil.example", "hi", "<r2@x>")
    assert replay.status_code == 403
    assert container.store.counts()["messages"] == 1


def test_twilio_replays_fail_the_signature_or_are_deduplicated(
    serve: ServeFactory, twilio: FakeTwilio
) -> None:
    """No replay table for Twilio: its signature covers every field, and MessageSid dedupes."""
    served = serve(**twilio_settings(twilio))
    container = served.container
    url = served.base + TWILIO_INBOUND
    fields = {"MessageSid": "SMreplay", "AccountSid": twilio.account_sid,
              "From": "+14155550123", "To": "+14155550199", "Body": "hi", "NumMedia": "0"}
    signature = twilio_signature("tw-token", url, fields)
    for _ in range(3):
        same = httpx.post(url, data=fields, headers={"X-Twilio-Signature": signature})
        assert same.status_code == 200
    forged = httpx.post(url, data={**fields, "From": "+14155550666", "Body": "refund me"},
                        headers={"X-Twilio-Signature": signature})
    assert forged.status_code == 403
    counts = container.store.counts()
    assert (counts["customers"], counts["messages"]) == (1, 1)
    assert container.store.find_customer(Identity(kind="phone", value="+14155550666")) is None
