"""The web-chat widget API on the real server: sessions, messages, the event stream."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.routes import webchat
from core.domain import Identity
from tests.channels.conftest import Served, ServeFactory


class Events:
    """Server-Sent Events read off a streaming response, one block at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines: Iterator[str] = response.iter_lines()

    def next(self) -> dict[str, str]:
        block: dict[str, str] = {}
        for line in self._lines:
            if not line:
                if block:
                    return block
                continue
            if line.startswith(":"):
                block["comment"] = line[1:].strip()
                continue
            name, _, value = line.partition(":")
            block[name] = value.removeprefix(" ")
        raise EOFError("the stream ended")

    def message(self) -> dict[str, Any]:
        """The next ``message`` event's data (skipping comments), checking its id."""
        while True:
            block = self.next()
            if block.get("event") == "message":
                data: dict[str, Any] = json.loads(block["data"])
                assert block["id"] == data["id"]
                return data


def new_session(served: Served, **body: Any) -> tuple[str, str]:
    response = httpx.post(served.base + "/v1/webchat/sessions", json=body or None)
    assert response.status_code == 201
    session = response.json()
    return session["session_id"], session["token"]


def say(served: Served, session_id: str, token: str, text: str,
        client_message_id: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{served.base}/v1/webchat/{session_id}/messages",
        json={"text": text, "client_message_id": client_message_id},
        headers={"X-Session-Token": token},
    )


def signed(served: Served, key: bytes, session_id: str) -> str:
    """The token of a session issued now: ``<issued at>.<HMAC of "<id>.<issued at>">``."""
    issued = int(served.container.store.clock.now().timestamp())
    return f"{issued}." + hmac.new(key, f"{session_id}.{issued}".encode(),
                                   hashlib.sha256).hexdigest()


def test_a_session_token_is_the_hmac_of_its_id_under_a_private_key(serve: ServeFactory) -> None:
    served = serve()
    session_id, token = new_session(served)
    assert session_id.startswith("wc_")
    key_file = served.container.settings.data_dir / "session.key"
    assert os.stat(key_file).st_mode & 0o777 == 0o600
    key = bytes.fromhex(key_file.read_text().strip())
    assert token == signed(served, key, session_id)
    # the key is created once
    other_id, other_token = new_session(served)
    assert other_token == signed(served, key, other_id)
    assert served.container.store.counts()["customers"] == 0


def test_a_configured_session_secret_is_used(serve: ServeFactory) -> None:
    served = serve(session_secret="shh")
    session_id, token = new_session(served)
    assert token == signed(served, b"shh", session_id)
    assert not (served.container.settings.data_dir / "session.key").exists()


def test_messages_need_the_sessions_token(serve: ServeFactory) -> None:
    served = serve()
    session_id, token = new_session(served)
    _, other_token = new_session(served)
    flipped = token[:-1] + ("1" if token.endswith("0") else "0")
    for wrong in (other_token, "", flipped):
        response = say(served, session_id, wrong, "hello")
        assert response.status_code == 403
        assert response.json() == {"detail": "wrong or missing session token"}
    assert served.container.store.counts()["messages"] == 0

    posted = say(served, session_id, token, "What does the Growth plan include?", "c-1")
    assert posted.status_code == 202
    accepted = posted.json()
    [message] = served.container.store.messages()
    assert (message.id, message.channel, message.external_id) == (
        accepted["message_id"], "web_chat", f"{session_id}:c-1")
    assert [j.payload for j in served.container.store.jobs.list(kind="turn")] == [
        {"message_id": message.id}]
    # the widget resends after a network error: stored once
    again = say(served, session_id, token, "What does the Growth plan include?", "c-1")
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert served.container.store.counts()["messages"] == 1


def test_client_message_ids_are_scoped_to_their_session(serve: ServeFactory) -> None:
    served = serve()
    (a, a_token), (b, b_token) = new_session(served), new_session(served)
    first = say(served, a, a_token, "hi from a", "1").json()
    second = say(served, b, b_token, "hi from b", "1").json()
    assert second["duplicate"] is False
    assert first["customer_id"] != second["customer_id"]
    assert served.container.store.counts()["messages"] == 2


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"text": "   "}, "text is empty"),
        ({"text": "x" * 4001}, "at most 4000 characters"),
        ({"text": ""}, "at least 1 character"),
    ],
)
def test_bad_messages_are_422(serve: ServeFactory, body: dict[str, Any], detail: str) -> None:
    served = serve()
    session_id, token = new_session(served)
    response = httpx.post(f"{served.base}/v1/webchat/{session_id}/messages", json=body,
                          headers={"X-Session-Token": token})
    assert response.status_code == 422
    assert detail in response.json()["detail"]


def test_pre_chat_details_never_claim_an_existing_profile(serve: ServeFactory) -> None:
    served = serve()
    store = served.container.store
    dana = store.create_customer([Identity(kind="email", value="dana@northwind.example")],
                                 "lead", name="Dana")
    session_id, _ = new_session(served, name="Not Dana", email="dana@northwind.example")
    visitor = store.find_customer(Identity(kind="web_chat_id", value=session_id))
    assert visitor is not None and visitor.id != dana.id
    assert visitor.name == "Not Dana"
    assert visitor.attributes == {"unverified_email": "dana@northwind.example"}
    assert visitor.identities == [Identity(kind="web_chat_id", value=session_id)]


def test_the_stream_delivers_replies_and_resumes_after_the_last_event(
    serve: ServeFactory,
) -> None:
    served = serve()
    container = served.container
    session_id, token = new_session(served)
    url = f"{served.base}/v1/webchat/{session_id}/stream"
    with httpx.Client(timeout=10) as client:
        with client.stream("GET", url, params={"token": token}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = Events(response)
            assert events.next() == {"retry": "2000"}

            posted = say(served, session_id, token, "What does the Growth plan include?")
            turn = container.orchestrator.run_queued_turn(posted.json()["message_id"])
            assert turn.reply
            started = time.monotonic()
            container.hub.notify(f"customer:{turn.customer_id}")
            first = events.message()
            assert time.monotonic() - started < 1.5  # woken by the hub, not the 2 s poll
            assert (first["text"], first["author"]) == (turn.reply, "bot")
            assert first["created_at"].startswith("2026-11-03T15:00:00")

            # a reply delivered by another process (no notification here) is found by polling
            posted = say(served, session_id, token, "Do you offer SSO?")
            second_turn = container.orchestrator.run_queued_turn(posted.json()["message_id"])
            second = events.message()
            assert second["text"] == second_turn.reply
            assert second["id"] != first["id"]

        with client.stream("GET", url, headers={"X-Session-Token": token,
                                                "Last-Event-ID": first["id"]}) as resumed:
            events = Events(resumed)
            assert events.message()["id"] == second["id"]

        with client.stream("GET", url, params={"token": token}) as replay:
            events = Events(replay)
            assert [events.message()["id"], events.message()["id"]] == [first["id"],
                                                                        second["id"]]


def test_a_new_session_stream_waits_with_keep_alives(
    serve: ServeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webchat, "KEEPALIVE_S", 0.3)
    served = serve()
    session_id, token = new_session(served)
    url = f"{served.base}/v1/webchat/{session_id}/stream?token={token}"
    with httpx.Client(timeout=10) as client, client.stream("GET", url) as response:
        events = Events(response)
        assert events.next() == {"retry": "2000"}
        assert events.next() == {"comment": "keep-alive"}
        assert events.next() == {"comment": "keep-alive"}
    assert served.container.store.counts()["customers"] == 0


def test_a_stream_ends_after_its_lifetime_for_the_browser_to_reconnect(
    serve: ServeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webchat, "STREAM_MAX_S", 0.5)
    served = serve()
    session_id, token = new_session(served)
    url = f"{served.base}/v1/webchat/{session_id}/stream?token={token}"
    with httpx.Client(timeout=10) as client, client.stream("GET", url) as response:
        events = Events(response)
        assert events.next() == {"retry": "2000"}
        with pytest.raises(EOFError):
            events.next()


def test_the_stream_needs_the_sessions_token(serve: ServeFactory) -> None:
    served = serve()
    session_id, token = new_session(served)
    other_id, _ = new_session(served)
    for url in (f"/v1/webchat/{session_id}/stream", f"/v1/webchat/{other_id}/stream"
                f"?token={token}", f"/v1/webchat/{session_id}/stream?token=abc"):
        response = httpx.get(served.base + url)
        assert response.status_code == 403
    assert httpx.get(served.base + "/v1/webchat/not-a-session/stream").status_code == 422
