"""Promises about turns when several processes share one database:

- one conversation's turns run one at a time and in the order its messages arrived, whichever
  process (``journey serve`` answering inline, a ``journey worker`` running queued turns) takes
  which message;
- a message the server acknowledged always gets its decision, exactly once, even when the
  process running its turn is killed (kill -9) in the middle of it.

The processes are real (``journey serve``, ``journey worker``) on a fresh PostgreSQL database.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from sqlalchemy import create_engine, text

from channels.webhook import sign_webhook
from tests import fakes
from tests.providers import reply_json
from tests.trust.processes import DEADLINE_S, running_processes

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
SECRET = "wh-secret"
ADMIN = {"Authorization": "Bearer test-admin"}


def _settings(pg_url: str, data: Path, **extra: Any) -> dict[str, Any]:
    return {"JOURNEY_DATABASE_URL": pg_url, "JOURNEY_DATA_DIR": data,
            "JOURNEY_WEBHOOK_SECRET": SECRET, **extra}


def _signed(base: str, body: dict[str, Any]) -> httpx.Response:
    raw = json.dumps(body).encode()
    header = sign_webhook(SECRET, raw, int(time.time()))
    return httpx.post(f"{base}/v1/channels/webhook/inbound", content=raw, timeout=120,
                      headers={"Content-Type": "application/json",
                               "X-Journey-Signature": header})


@dataclass(frozen=True)
class Turn:
    message_id: str
    arrived: datetime
    started: datetime
    ended: datetime


def _turns(pg_url: str, customer: str) -> list[Turn]:
    """Each inbound message of the customer with its decision's start and end, in arrival
    order (messages without a decision are left out)."""
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT m.id, m.created_at, d.created_at, d.latency_ms FROM messages m "
                "JOIN decisions d ON d.inbound_message_id = m.id "
                "WHERE m.customer_id = :c ORDER BY m.created_at, m.id"), {"c": customer}).all()
    finally:
        engine.dispose()
    return [Turn(mid, arrived, ended - timedelta(milliseconds=latency), ended)
            for mid, arrived, ended, latency in rows]


def _wait_for(what: str, check: Any, deadline_s: float = DEADLINE_S) -> Any:
    """Poll ``check`` until it returns something truthy; a wait, not a timed assertion."""
    deadline = time.monotonic() + deadline_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"waited {deadline_s:g} s for {what}")
        time.sleep(0.25)


def test_one_conversation_runs_one_turn_at_a_time_in_arrival_order_across_processes(
    pg_url: str, tmp_path: Path
) -> None:
    n = 20
    with running_processes(tmp_path) as procs:
        api = procs.serve(_settings(pg_url, tmp_path / "serve", JOURNEY_WORKERS=1))
        worker = procs.worker(_settings(pg_url, tmp_path / "worker"), threads=2)
        api.wait_ready()
        worker.wait_ready()
        base = api.base_url
        who = {"web_chat_id": "wc_serial"}
        first = httpx.post(f"{base}/v1/messages", headers=ADMIN, timeout=120, json={
            "channel": "web_chat", "customer": who, "text": "hi there", "external_id": "s-0"})
        assert first.status_code == 200, first.text
        customer = first.json()["customer_id"]
        go = threading.Barrier(n)
        questions = ["What plans do you offer?", "Do you have SSO?", "How much is Growth?",
                     "Can I export my data?"]

        def send(i: int) -> int:
            body = {"channel": "web_chat", "customer": who,
                    "text": f"{questions[i % len(questions)]} ({i})", "external_id": f"s-{i + 1}"}
            go.wait()
            if i % 2:  # half answered inline by serve, half queued for any worker
                return httpx.post(f"{base}/v1/messages", headers=ADMIN, json=body,
                                  timeout=300).status_code
            return _signed(base, body).status_code

        with ThreadPoolExecutor(n) as pool:
            codes = list(pool.map(send, range(n)))
        assert codes == [200] * n
        def all_decided() -> list[Turn] | None:
            found = _turns(pg_url, customer)
            return found if len(found) == n + 1 else None

        turns = _wait_for(f"{n + 1} decisions", all_decided)

    assert len({t.message_id for t in turns}) == n + 1
    overlaps = [(a.message_id, b.message_id) for i, a in enumerate(turns)
                for b in turns[i + 1:] if a.started < b.ended and b.started < a.ended]
    inversions = [(a.message_id, b.message_id) for i, a in enumerate(turns)
                  for b in turns[i + 1:] if b.ended < a.ended]
    assert overlaps == []
    assert inversions == []


class HangingModel(BaseHTTPRequestHandler):
    """A chat-completions server whose first request hangs until ``release`` is set."""

    arrived: ClassVar[threading.Event] = threading.Event()
    release: ClassVar[threading.Event] = threading.Event()
    calls: ClassVar[int] = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls += 1
        type(self).arrived.set()
        type(self).release.wait()
        reply = fakes.tool_calls(("record_decision", {
            "intent": "product_question", "stage": "awareness", "sentiment": "neutral",
            "confidence": 0.9, "reply": "Growth includes up to 25 seats."}))
        reply_json(self, 200, reply)

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def hanging_model() -> Iterator[str]:
    HangingModel.arrived, HangingModel.release = threading.Event(), threading.Event()
    HangingModel.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), HangingModel)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    HangingModel.release.set()
    server.shutdown()


def test_a_message_whose_turn_was_killed_is_decided_once_in_the_background(
    pg_url: str, tmp_path: Path, hanging_model: str
) -> None:
    model = {"JOURNEY_BRAIN": "openai", "JOURNEY_LLM_BASE_URL": hanging_model,
             "JOURNEY_LLM_MODE": "tools", "JOURNEY_LLM_TIMEOUT_S": 600, "JOURNEY_JOB_LEASE_S": 5}
    body = {"channel": "web_chat", "customer": {"web_chat_id": "wc_killed"},
            "text": "what does the Growth plan include?", "external_id": "k-1"}
    with running_processes(tmp_path) as procs:
        first = procs.serve(_settings(pg_url, tmp_path / "first", JOURNEY_WORKERS=0, **model))
        first.wait_ready()
        answered: list[Any] = []
        client = threading.Thread(target=lambda: answered.append(_post(first.base_url, body)))
        client.start()
        assert HangingModel.arrived.wait(DEADLINE_S), "the turn never reached the model"
        first.kill_hard()  # kill -9 in the middle of the turn
        client.join(60)
        assert answered and isinstance(answered[0], Exception)  # the client saw it die
        assert _decisions(pg_url) == []

        HangingModel.release.set()  # the model answers again; a new server starts
        second = procs.serve(_settings(pg_url, tmp_path / "second", JOURNEY_WORKERS=1, **model))
        second.wait_ready()
        # nobody retries: the worker decides the acknowledged message once its lease ran out
        decided = _wait_for("the decision", lambda: _decisions(pg_url))
        # a client retrying now gets that decision, not a 409 and not a second turn
        retry = _post(second.base_url, body)
        assert not isinstance(retry, Exception) and retry.status_code == 200, retry
        assert retry.json()["duplicate"] is True
        assert retry.json()["decision"]["id"] == decided[0]
    assert len(_decisions(pg_url)) == 1
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            replies = conn.execute(text(
                "SELECT count(*) FROM messages WHERE direction = 'outbound'")).scalar_one()
            outbox = conn.execute(text("SELECT count(*) FROM outbox")).scalar_one()
    finally:
        engine.dispose()
    assert (replies, outbox) == (1, 1)


def _post(base: str, body: dict[str, Any]) -> httpx.Response | Exception:
    try:
        return httpx.post(f"{base}/v1/messages", headers=ADMIN, json=body, timeout=300)
    except httpx.HTTPError as exc:
        return exc


def _decisions(pg_url: str) -> list[str]:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT id FROM decisions")).scalars())
    finally:
        engine.dispose()
