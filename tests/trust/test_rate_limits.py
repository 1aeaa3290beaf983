"""Promise: nobody can hammer the service. Console sign-in and the anonymous web chat are limited
per client address, the API per key, and missing or unknown keys per address; an answer over a
limit is ``429`` naming what was limited, with ``Retry-After`` in seconds.

The limits here are a few per hour, so no result depends on how fast the machine is. Every
request of a test comes from 127.0.0.1; "another address" is 127.0.0.2 (any 127/8 address
reaches the loopback server on Linux).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tests.trust.conftest import ServeFactory

KEYS: dict[str, Any] = {
    "test-admin": ["admin"],
    "test-writer": ["messages:write"],
    "reader-key": ["conversations:read"],
    "other-reader": ["conversations:read"],
    "alice-key": {"name": "Alice", "scopes": ["inbox:support"]},
}
OTHER_ADDRESS = "127.0.0.2"


@contextmanager
def http(base: str, key: str | None = None, address: str | None = None
         ) -> Iterator[httpx.Client]:
    """A client of the served app, with an API key, from a given source address."""
    if address is not None:
        with socket.socket() as probe:
            try:
                probe.bind((address, 0))
            except OSError:
                pytest.skip(f"this machine cannot send from {address}")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    transport = httpx.HTTPTransport(local_address=address) if address else None
    with httpx.Client(base_url=base, headers=headers, timeout=60, follow_redirects=False,
                      transport=transport) as client:
        yield client


def assert_limited(response: httpx.Response, what: str) -> None:
    assert response.status_code == 429
    assert 0 < int(response.headers["retry-after"]) <= 3600
    assert what in response.text


def test_console_sign_in_is_limited_per_address(serve: ServeFactory) -> None:
    served = serve(api_keys=KEYS, rate_limit_login="3/hour")
    with http(served.base) as browser:
        # a right key signs in, and does not use up the address's attempts
        assert browser.post("/console/login", data={"key": "alice-key"}).status_code == 303
        for guess in ("guess-1", "guess-2", "guess-3"):
            wrong = browser.post("/console/login", data={"key": guess})
            assert wrong.status_code == 401 and "Unknown API key." in wrong.text
        limited = browser.post("/console/login", data={"key": "guess-4"})
        assert_limited(limited, "Too many sign-in attempts")
        # the address is blocked: a right guess would learn nothing either
        assert browser.post("/console/login", data={"key": "alice-key"}).status_code == 429
    with http(served.base, address=OTHER_ADDRESS) as elsewhere:
        assert elsewhere.post("/console/login", data={"key": "alice-key"}).status_code == 303


def test_anonymous_web_chat_is_limited_per_address(serve: ServeFactory) -> None:
    served = serve(api_keys=KEYS, rate_limit_webchat_sessions="2/hour",
                   rate_limit_webchat_messages="3/hour")
    with http(served.base) as browser:
        sessions = [browser.post("/v1/webchat/sessions") for _ in range(2)]
        assert [s.status_code for s in sessions] == [201, 201]
        assert_limited(browser.post("/v1/webchat/sessions"), "chat sessions")

        (a, a_token), (b, b_token) = ((s.json()["session_id"], s.json()["token"])
                                      for s in sessions)

        def say(session_id: str, token: str, text: str) -> httpx.Response:
            return browser.post(f"/v1/webchat/{session_id}/messages", json={"text": text},
                                headers={"X-Session-Token": token})

        # the limit is the address's, over all its sessions
        assert [say(a, a_token, "hi").status_code, say(b, b_token, "hello").status_code,
                say(a, a_token, "anyone?").status_code] == [202, 202, 202]
        assert_limited(say(b, b_token, "still there?"), "chat messages")
        assert served.container.store.counts()["messages"] == 3  # the limited one is not kept

    # your backend starts signed-in chats with its API key: limited per key, not per address
    with http(served.base, "test-writer") as backend:
        started = backend.post("/v1/webchat/sessions",
                               json={"signed_in": {"email": "dana@example.com"}})
        assert started.status_code == 201, started.text
    with http(served.base, address=OTHER_ADDRESS) as elsewhere:
        assert elsewhere.post("/v1/webchat/sessions").status_code == 201


def test_each_api_key_has_its_own_limit(serve: ServeFactory) -> None:
    served = serve(api_keys=KEYS, rate_limit_api="3/hour")
    with http(served.base, "reader-key") as reader, \
            http(served.base, "other-reader") as other, http(served.base, "alice-key") as alice:
        assert [reader.get("/v1/decisions").status_code for _ in range(3)] == [200] * 3
        assert_limited(reader.get("/v1/decisions"), "this API key")
        assert other.get("/v1/decisions").status_code == 200  # another key is not affected
        # the inbox's agent keys too
        assert [alice.get("/v1/handoffs").status_code for _ in range(3)] == [200] * 3
        assert_limited(alice.get("/v1/handoffs/metrics"), "this API key")
        assert other.get("/v1/health").status_code == 200  # no key, no limit


def test_missing_and_unknown_keys_are_limited_per_address(serve: ServeFactory) -> None:
    served = serve(api_keys=KEYS, rate_limit_api="3/hour")
    with http(served.base) as anonymous, http(served.base, "guess-1") as guess_1, \
            http(served.base, "guess-2") as guess_2, http(served.base, "guess-3") as guess_3, \
            http(served.base, "reader-key") as reader:
        assert [c.get("/v1/decisions").status_code for c in (anonymous, guess_1, guess_2)] == [
            401, 401, 401]
        assert_limited(guess_3.get("/v1/decisions"), "missing or unknown API key")
        # a blocked address learns nothing, not even from a right key
        assert reader.get("/v1/decisions").status_code == 429
    with http(served.base, "reader-key", address=OTHER_ADDRESS) as elsewhere:
        assert elsewhere.get("/v1/decisions").status_code == 200


def test_an_empty_setting_switches_a_limit_off(serve: ServeFactory) -> None:
    served = serve(api_keys=KEYS, rate_limit_api="", rate_limit_login="")
    with http(served.base, "guess") as guess:
        assert {guess.get("/v1/decisions").status_code for _ in range(5)} == {401}
        assert {guess.post("/console/login", data={"key": "x"}).status_code
                for _ in range(5)} == {401}


def test_the_limited_routes_document_429(serve: ServeFactory) -> None:
    served = serve()
    with http(served.base) as anonymous:
        paths = anonymous.get("/openapi.json").json()["paths"]
    for path, method in (("/v1/webchat/sessions", "post"),
                         ("/v1/webchat/{session_id}/messages", "post"),
                         ("/v1/handoffs", "get"), ("/v1/handoffs/metrics", "get")):
        assert "429" in paths[path][method]["responses"], (path, method)
