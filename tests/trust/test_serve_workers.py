"""The multi-process topology: ``journey serve --workers 2`` (two uvicorn worker processes on
one port) beside a ``journey worker`` process, sharing one PostgreSQL database and one
``chroma run`` server.

Promises: several conversations written to at once, through both the API (answered inline by
whichever API process the kernel hands the connection to) and the signed inbound webhook
(queued for any worker), are each decided exactly once, and each conversation's turns run one
at a time in the order its messages arrived. The processes and the Chroma server are real; the
waits have generous deadlines and nothing is timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine, text

from channels.webhook import sign_webhook
from core.settings import Settings
from tests import fakes
from tests.server import client, free_port, running_server
from tests.trust.processes import DEADLINE_S, DEFAULTS, JourneyProcess, running_processes

pytestmark = [pytest.mark.slow]
SECRET = "wh-secret"
ADMIN = {"Authorization": "Bearer test-admin"}
CHROMA = Path(sys.executable).with_name("chroma")


@pytest.fixture
def chroma_url(tmp_path: Path) -> Iterator[str]:
    """A real ``chroma run`` on loopback with its own data directory."""
    port = free_port()
    log_path = tmp_path / "chroma.log"
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(CHROMA), "run", "--path", str(tmp_path / "chroma"), "--host", "127.0.0.1",
             "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + DEADLINE_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"chroma run exited with {proc.returncode}:\n"
                            + log_path.read_text(errors="replace"))
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("chroma run did not answer its heartbeat:\n"
                            + log_path.read_text(errors="replace"))
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def _signed(base: str, body: dict[str, Any]) -> httpx.Response:
    raw = json.dumps(body).encode()
    return httpx.post(f"{base}/v1/channels/webhook/inbound", content=raw, timeout=300, headers={
        "Content-Type": "application/json",
        "X-Journey-Signature": sign_webhook(SECRET, raw, int(time.time()))})


def _decided(pg_url: str) -> list[tuple[str, str, Any, int]]:
    """(conversation, message, decision committed at, latency ms) of every answered inbound
    message, each conversation's in arrival order."""
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(  # type: ignore[misc]
                "SELECT m.conversation_id, m.id, d.created_at, d.latency_ms FROM messages m "
                "JOIN decisions d ON d.inbound_message_id = m.id "
                "ORDER BY m.conversation_id, m.created_at, m.id")).all()]
    finally:
        engine.dispose()


def _count(pg_url: str, sql: str) -> int:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_two_api_processes_and_a_worker_decide_each_message_once_in_order(
    pg_url: str, chroma_url: str, tmp_path: Path
) -> None:
    conversations, messages = 6, 4
    shared = {"JOURNEY_DATABASE_URL": pg_url, "JOURNEY_CHROMA_URL": chroma_url,
              "JOURNEY_WEBHOOK_SECRET": SECRET, "JOURNEY_RATE_LIMIT_API": ""}
    with running_processes(tmp_path / "processes") as procs:
        port = free_port()
        home = tmp_path / "processes" / "serve"
        api = JourneyProcess(
            "serve", ["serve", "--port", str(port), "--workers", "2"],
            {**DEFAULTS, **shared, "JOURNEY_DATA_DIR": home / "data", "JOURNEY_PORT": port,
             "JOURNEY_WORKERS": 1},
            home, base_url=f"http://127.0.0.1:{port}")
        procs.started.append(api)
        worker = procs.worker({**shared, "JOURNEY_DATA_DIR": tmp_path / "worker"}, threads=2)
        base = f"http://127.0.0.1:{port}"
        api.wait_ready()
        worker.wait_ready()
        # two server processes came up (uvicorn names each one as it starts)
        started = api.wait_for_line(
            r"Started server process \[(\d+)\][\s\S]*Started server process \[(?!\1\])(\d+)\]",
            what="two server processes")
        assert started.group(1) != started.group(2)

        def person(c: int) -> list[int]:
            codes = []
            for i in range(messages):
                body = {"channel": "web_chat", "customer": {"web_chat_id": f"wc_multi_{c}"},
                        "text": f"What does the Growth plan include? ({c}.{i})",
                        "external_id": f"m-{c}-{i}"}
                if (c + i) % 2:  # answered inline by one of the API processes
                    codes.append(httpx.post(f"{base}/v1/messages", headers=ADMIN,
                                            json=body, timeout=300).status_code)
                else:  # stored and queued: a worker thread or the worker process runs it
                    codes.append(_signed(base, body).status_code)
            return codes

        with ThreadPoolExecutor(conversations) as pool:
            codes = [code for each in pool.map(person, range(conversations)) for code in each]
        assert codes == [200] * (conversations * messages)
        total = conversations * messages
        deadline = time.monotonic() + DEADLINE_S * 2
        while len(rows := _decided(pg_url)) < total:
            if time.monotonic() > deadline:
                pytest.fail(f"{len(rows)} of {total} messages decided\n{api.log()[-4000:]}")
            time.sleep(0.5)

    assert len(rows) == total
    assert len({row[1] for row in rows}) == total  # each message decided once
    assert _count(pg_url, "SELECT count(*) FROM messages WHERE direction = 'inbound'") == total
    # one reply per message, none twice
    assert _count(pg_url, "SELECT count(*) FROM messages WHERE direction = 'outbound'") == total
    lanes: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
    for conversation, _message, ended, latency in rows:
        lanes[conversation].append((ended - timedelta(milliseconds=latency), ended))
    assert len(lanes) == conversations
    overlaps, inversions = [], []
    for conversation, turns in lanes.items():
        for i, (a_start, a_end) in enumerate(turns):
            for b_start, b_end in turns[i + 1:]:
                if a_start < b_end and b_start < a_end:
                    overlaps.append(conversation)
                if b_end < a_end:
                    inversions.append(conversation)
    assert overlaps == []
    assert inversions == []


def test_the_server_runs_at_most_max_concurrent_turns_at_once(
    make_container: Any,
) -> None:
    """``JOURNEY_MAX_CONCURRENT_TURNS``: 8 conversations posting at once through the real server
    (uvicorn in a thread) with a limit of 2 never have more than 2 turns at the model at once,
    and every request is answered."""
    in_flight = {"now": 0, "most": 0}
    lock = threading.Lock()
    reply = fakes.tool_calls(("record_decision", {
        "intent": "product_question", "stage": "awareness", "sentiment": "neutral",
        "confidence": 0.9, "reply": "Growth includes up to 25 seats."}))

    def model(_request: httpx.Request) -> httpx.Response:
        with lock:
            in_flight["now"] += 1
            in_flight["most"] = max(in_flight["most"], in_flight["now"])
        time.sleep(0.05)  # a model that takes a moment, so turns would overlap without a limit
        with lock:
            in_flight["now"] -= 1
        return httpx.Response(200, json=reply)

    container = make_container(
        brain="openai", llm_mode="tools", max_concurrent_turns=2,
        llm_http_client=httpx.Client(transport=httpx.MockTransport(model)))
    with running_server(container) as base, ThreadPoolExecutor(8) as pool:
        def post(i: int) -> int:
            with client(base) as http:
                return http.post("/v1/messages", json={
                    "channel": "web_chat", "customer": {"web_chat_id": f"wc_limit_{i}"},
                    "text": "What does the Growth plan include?",
                    "external_id": f"limit-{i}"}).status_code

        codes = list(pool.map(post, range(8)))
    assert codes == [200] * 8
    assert 1 <= in_flight["most"] <= 2


def test_settings_refuse_more_turns_at_once_than_the_pool_holds() -> None:
    """Each running turn holds two pooled PostgreSQL connections: more turns at once than half
    the pool deadlocked it (every turn holding one, waiting for a second)."""
    postgres = "postgresql+psycopg://journey@127.0.0.1:5432/journey"
    with pytest.raises(ValidationError, match=r"JOURNEY_MAX_CONCURRENT_TURNS \(6\) \+ "
                       r"JOURNEY_WORKERS \(16\) = 22 turns at once"):
        Settings(database_url=postgres, workers=16, max_concurrent_turns=6)
    assert Settings(database_url=postgres, workers=3, max_concurrent_turns=6).workers == 3
    # SQLite serialises its writers and has no pool to exhaust
    assert Settings(database_url="sqlite:///x.sqlite", workers=16).workers == 16
