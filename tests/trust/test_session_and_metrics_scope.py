"""Promises: a web-chat session token expires (``webchat_session_ttl_s`` after it was issued, on
the server's clock), and an agent whose key covers some queues sees only those queues' handoff
metrics, in the API and in the console."""

from __future__ import annotations

import re
from typing import Any

import httpx

from core.clock import FixedClock
from tests.server import client
from tests.trust.conftest import ServeFactory

EXPIRED = {"detail": "session expired: start a new session"}
WRONG = {"detail": "wrong or missing session token"}


def test_a_web_chat_session_expires_after_its_ttl(serve: ServeFactory, clock: FixedClock
                                                   ) -> None:
    served = serve(webchat_session_ttl_s=3600)
    base = served.base
    started = httpx.post(base + "/v1/webchat/sessions")
    assert started.status_code == 201
    session_id, token = started.json()["session_id"], started.json()["token"]

    def say(text: str, with_token: str = token) -> httpx.Response:
        return httpx.post(f"{base}/v1/webchat/{session_id}/messages", json={"text": text},
                          headers={"X-Session-Token": with_token})

    def stream_status() -> tuple[int, Any]:
        with httpx.stream("GET", f"{base}/v1/webchat/{session_id}/stream",
                          params={"token": token}, timeout=60) as response:
            if response.status_code != 200:
                response.read()
                return response.status_code, response.json()
            return 200, None

    assert say("hello").status_code == 202
    assert stream_status() == (200, None)
    clock.advance(seconds=3599)  # still within the hour
    assert say("still there?").status_code == 202

    clock.advance(seconds=2)
    late = say("and now?")
    assert (late.status_code, late.json()) == (403, EXPIRED)
    assert stream_status() == (403, EXPIRED)
    forged = token[:-1] + ("1" if token.endswith("0") else "0")
    assert (say("forged", forged).status_code, say("forged", forged).json()) == (403, WRONG)
    assert served.container.store.counts()["messages"] == 2

    # the widget starts a new session
    renewed = httpx.post(base + "/v1/webchat/sessions").json()
    again = httpx.post(f"{base}/v1/webchat/{renewed['session_id']}/messages",
                       json={"text": "hello again"},
                       headers={"X-Session-Token": renewed["token"]})
    assert again.status_code == 202


KEYS: dict[str, Any] = {
    "test-admin": ["admin"],
    "bob-key": {"name": "Bob", "scopes": ["inbox"]},
    "alice-key": {"name": "Alice", "scopes": ["inbox:support"]},
    "sid-key": {"name": "Sid", "scopes": ["inbox:sales"]},
}


def test_a_queue_scoped_key_sees_only_its_queues_metrics(serve: ServeFactory) -> None:
    served = serve(api_keys=KEYS)
    admin = client(served.base)
    for customer, text in (
        ({"web_chat_id": "wc_metrics01"}, "Can I talk to a person please?"),
        ({"email": "buyer@bigco.example"}, "We're 500 seats and need SSO and a quote"),
    ):
        channel = "web_chat" if "web_chat_id" in customer else "email"
        turn = admin.post("/v1/messages",
                          json={"channel": channel, "customer": customer, "text": text})
        assert turn.status_code == 200, turn.text
    bob = client(served.base, "bob-key")
    assert sorted(h["queue"] for h in bob.get("/v1/handoffs").json()) == ["sales", "support"]
    everything = bob.get("/v1/handoffs/metrics").json()
    assert [q["queue"] for q in everything["queues"]] == ["sales", "support"]
    assert everything["total"]["created"] == 2

    for key, queue in (("alice-key", "support"), ("sid-key", "sales")):
        mine = client(served.base, key).get("/v1/handoffs/metrics")
        assert mine.status_code == 200
        assert [q["queue"] for q in mine.json()["queues"]] == [queue], key
        assert mine.json()["total"]["created"] == 1, key

    # the console's metrics page: the agent's queue only
    with httpx.Client(base_url=served.base, follow_redirects=False, timeout=60) as browser:
        assert browser.post("/console/login", data={"key": "alice-key"}).status_code == 303
        page = browser.get("/console/metrics")
        assert page.status_code == 200
        assert re.findall(r'<tr data-queue="([a-z_]+)"', page.text) == ["support"]
        assert ">sales<" not in page.text
