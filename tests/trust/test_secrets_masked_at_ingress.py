"""Promise: a card number (or a configured secret) a customer types is masked before anything
stores, embeds, prompts or shows it; the last 4 digits stay so a person can refer to it.

The real server takes it on every way in (the API, a signed Twilio SMS, anonymous web chat, a
behavioural event); then every table of the database, the LangGraph checkpoints, the Chroma
collection, the model's prompts and the inbox packet are searched for the digits.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

import httpx
import psycopg
from sqlalchemy import select, text

from journey.runtime import Container
from memory import db
from tests import fakes
from tests.providers import FakeTwilio
from tests.server import client, drain, one_worker
from tests.trust.conftest import TWILIO_INBOUND, ServeFactory, twilio_settings

CARDS = ("4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005")
#: each card's digits with any separators, and the two other secrets of the default policy
LEAK = re.compile(
    r"4111\W?1111\W?1111\W?1111|5500\W?0000\W?0000\W?0004|3782\W?822463\W?10005"
    r"|cvv\W{0,3}731|123-45-6789",
    re.IGNORECASE,
)


def echo(body: dict[str, Any]) -> dict[str, Any]:
    """A model that repeats the customer's message into its reply and the handoff summary."""
    turn = body["messages"][-1]["content"]
    said = turn.rsplit("<customer_message>\n", 1)[-1].split("\n</customer_message>", 1)[0]
    record = {"intent": "billing", "stage": "awareness", "sentiment": "negative",
              "confidence": 0.9, "reply": f"You said: {said}"}
    return fakes.tool_calls(
        ("record_decision", record),
        ("escalate_to_human", {"queue": "support", "reason": "billing problem",
                               "summary": f"The customer wrote: {said}", "priority": "high"}),
    )


def _database_text(container: Container) -> str:
    """Every row of every table of the product's database, as text."""
    out = []
    with container.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            out += [repr(tuple(row)) for row in conn.execute(select(table))]
    return "\n".join(out)


def _checkpoint_bytes(container: Container) -> bytes:
    """Everything the LangGraph checkpointer wrote (blobs included)."""
    settings = container.settings
    if settings.is_postgres:
        url = settings.resolved_database_url.replace("postgresql+psycopg", "postgresql")
        chunks = []
        with psycopg.connect(url) as conn:
            for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
                for row in conn.execute(f"SELECT * FROM {table}"):
                    chunks += [bytes(v) if isinstance(v, bytes | memoryview) else
                               str(v).encode() for v in row]
        return b"\n".join(chunks)
    path = settings.data_dir / "checkpoints.sqlite"
    with sqlite3.connect(path) as conn:
        chunks = [bytes(v) if isinstance(v, bytes) else str(v).encode()
                  for table in ("checkpoints", "writes")
                  for row in conn.execute(f"SELECT * FROM {table}")
                  for v in row]
    return b"\n".join(chunks)


def _chroma_documents(container: Container) -> str:
    flush = getattr(container.memory, "flush", None)
    if flush is not None:  # the vector writes trail the turns: let them land first
        assert flush(), "the buffered vector writes did not land"
    collection = container.memory.collection  # type: ignore[attr-defined]
    return "\n".join(collection.get(include=["documents"])["documents"] or [])


def test_card_numbers_are_masked_on_every_way_in_and_found_nowhere(
    serve: ServeFactory, twilio: FakeTwilio
) -> None:
    model = fakes.ScriptedModel(*([echo] * 8))
    served = serve(brain="openai", llm_mode="tools", llm_http_client=model.client(),
                   **twilio_settings(twilio))
    container = served.container
    with client(served.base) as api:
        turn = api.post("/v1/messages", json={
            "channel": "email", "customer": {"email": "pat@example.com"},
            "text": f"My card {CARDS[0]} was charged twice! cvv 731, SSN 123-45-6789",
            "external_id": "m-card-1"})
        assert turn.status_code == 200, turn.text
        body = turn.json()
        assert not LEAK.search(json.dumps(body))
        assert "[card ending 1111]" in body["decision"]["reply"]
        events = api.post("/v1/events", json={"events": [{
            "id": "evt-card", "type": "checkout_failed", "customer": {"email": "pat@example.com"},
            "properties": {"note": f"card {CARDS[1]}", "nested": [{"raw": CARDS[2]}]},
            "traits": {"payment_hint": f"uses {CARDS[1]}"}}]})
        assert events.status_code == 200 and events.json()["accepted"] == 1, events.text
    sms = twilio.send_inbound(served.base + TWILIO_INBOUND, "+14155550123",
                              f"charge this one: {CARDS[2]}", sid="SMcard")
    assert sms.status_code == 200
    session = httpx.post(f"{served.base}/v1/webchat/sessions", json={}).json()
    chat = httpx.post(f"{served.base}/v1/webchat/{session['session_id']}/messages",
                      json={"text": f"is {CARDS[1]} the right card?"},
                      headers={"X-Session-Token": session["token"]})
    assert chat.status_code == 202, chat.text
    drain(one_worker(container))  # the queued turns (SMS, web chat) and the relay

    assert len(model.requests) >= 3  # the model was asked on each channel
    assert not LEAK.search(json.dumps(model.requests)), "a card number reached the prompt"
    stored = _database_text(container)
    assert "[card ending 1111]" in stored and "[card ending 0004]" in stored
    assert "[card ending 0005]" in stored and "[us_ssn ending 6789]" in stored
    assert "[card_security_code]" in stored
    assert not LEAK.search(stored), LEAK.search(stored)
    assert not LEAK.search(_checkpoint_bytes(container).decode("utf-8", "replace"))
    documents = _chroma_documents(container)
    assert "[card ending 1111]" in documents and not LEAK.search(documents)
    # the inbox shows the masked form to the people working the handoff
    handoff = container.store.handoffs()[0]
    with client(served.base) as api:
        packet = api.get(f"/v1/handoffs/{handoff.id}").json()
    assert "[card ending 1111]" in json.dumps(packet) and not LEAK.search(json.dumps(packet))


def test_a_changed_privacy_policy_masks_a_new_secret(
    serve: ServeFactory, tmp_path: Any
) -> None:
    from policy.loader import default_policy_path

    policy = tmp_path / "policy.yaml"
    policy.write_text(default_policy_path().read_text().replace(
        "  secrets:\n",
        '  secrets:\n    - {name: account_token, pattern: "\\\\bacct_[a-z0-9]{8,}\\\\b"}\n', 1))
    served = serve(policy_path=policy)
    with client(served.base) as api:
        turn = api.post("/v1/messages", json={
            "channel": "web_chat", "customer": {"web_chat_id": "wc_token"},
            "text": "my token is acct_9f8e7d6c5b please check", "external_id": "m-tok"})
    assert turn.status_code == 200, turn.text
    with served.container.engine.connect() as conn:
        texts = conn.execute(text("SELECT text FROM messages")).scalars().all()
    assert "my token is [account_token] please check" in texts
    assert not any("acct_9f8e7d6c5b" in t for t in texts)
