"""One contract for every VectorMemory adapter, plus Chroma-specific checks.

The contract runs against the in-process twin, an embedded Chroma
(PersistentClient) and a real ``chroma run`` server reached over HTTP.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.api.client import SharedSystemClient

from memory.embeddings import MiniLMEmbedder, MiniLMEmbeddingFunction, get_embedder
from memory.vector import (
    ChromaVectorMemory,
    InMemoryVectorMemory,
    MemoryHit,
    MemoryRecord,
    VectorMemory,
    chroma_settings,
)
from tests.server import free_port

CHROMA_BIN = Path(sys.executable).with_name("chroma")

# --------------------------------------------------------------------------- no network


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any Python-level connection that leaves this machine (telemetry...)."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                raise AssertionError(f"unexpected network connection to {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


# --------------------------------------------------------------------------- chroma server


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real ``chroma run`` on loopback, with its own data directory."""
    assert CHROMA_BIN.exists(), f"chroma CLI not found at {CHROMA_BIN}"
    root = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    log_path = root / "server.log"
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(CHROMA_BIN),
                "run",
                "--path",
                str(root / "data"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    url = f"http://127.0.0.1:{port}/api/v2/heartbeat"
    deadline = time.monotonic() + 30
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"chroma run exited with {proc.returncode}:\n"
                    + log_path.read_text(errors="replace")
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    "chroma run did not answer its heartbeat in 30 s:\n"
                    + log_path.read_text(errors="replace")
                )
            time.sleep(0.1)
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --------------------------------------------------------------------------- adapters

ADAPTERS = ["in-memory", "chroma-persistent", "chroma-http"]


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return get_embedder()


@pytest.fixture(params=ADAPTERS)
def make_memory(
    request: pytest.FixtureRequest, tmp_path: Path, embedder: MiniLMEmbedder
) -> Callable[[], VectorMemory]:
    """A factory of fresh, empty memories of one adapter kind."""
    kind: str = request.param

    def make() -> VectorMemory:
        if kind == "in-memory":
            return InMemoryVectorMemory(embedder)
        name = f"messages-{uuid.uuid4().hex[:12]}"
        if kind == "chroma-persistent":
            return ChromaVectorMemory.persistent(tmp_path / "chroma", embedder, collection=name)
        host, port = request.getfixturevalue("chroma_server")
        return ChromaVectorMemory.http(host, port, embedder, collection=name)

    return make


@pytest.fixture
def memory(make_memory: Callable[[], VectorMemory]) -> VectorMemory:
    return make_memory()


T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def _rec(id_: str, customer: str, text: str, **kw: Any) -> MemoryRecord:
    fields: dict[str, Any] = {
        "id": id_,
        "customer_id": customer,
        "conversation_id": kw.pop("conversation_id", f"conv-{customer}-1"),
        "channel": kw.pop("channel", "email"),
        "direction": kw.pop("direction", "inbound"),
        "text": text,
        "created_at": kw.pop("created_at", T0),
    }
    fields.update(kw)
    return MemoryRecord(**fields)


A_RECORDS = [
    _rec("a-1", "A", "I can't find the invoice for March, can you resend it?"),
    _rec("a-2", "A", "We need SAML single sign-on with Okta for our team", channel="chat"),
    _rec("a-3", "A", "Our invoice shows the wrong VAT number", direction="outbound"),
    _rec(
        "a-4",
        "A",
        "How do I add more seats to the Growth plan?",
        conversation_id="conv-A-2",
        created_at=T0 + timedelta(days=3),
    ),
]
B_RECORDS = [
    _rec("b-1", "B", "Where can I download my invoice for March?"),
    _rec("b-2", "B", "The invoice PDF has the wrong VAT number on it"),
    _rec("b-3", "B", "Okta SSO login fails for our users"),
    _rec("b-4", "B", "Please cancel my subscription", channel="sms"),
]
QUERIES = [
    "Where can I download my invoice for March?",  # B's exact text
    "invoice",
    "wrong VAT number on the invoice PDF",
    "Okta SSO login fails for our users",
    "Please cancel my subscription",
    "single sign-on",
    "seats on my plan",
    "billing",
    "hello",
    "refund",
]


def _ids(hits: list[MemoryHit]) -> list[str]:
    return [h.id for h in hits]


def _assert_sorted(hits: list[MemoryHit]) -> None:
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


# --------------------------------------------------------------------------- the contract


def test_adapters_satisfy_protocol(memory: VectorMemory) -> None:
    assert isinstance(memory, VectorMemory)


def test_search_never_crosses_customers(memory: VectorMemory) -> None:
    memory.add(A_RECORDS + B_RECORDS)
    a_ids = {r.id for r in A_RECORDS}
    b_ids = {r.id for r in B_RECORDS}
    for query in QUERIES:
        for k in (1, 3, len(A_RECORDS), 50):  # 50: far more than A holds
            hits = memory.search("A", query, k=k)
            assert {h.customer_id for h in hits} <= {"A"}, (query, k)
            assert set(_ids(hits)) <= a_ids, (query, k)
            assert len(hits) == min(k, len(A_RECORDS)), (query, k)
            _assert_sorted(hits)
        hits_b = memory.search("B", query, k=50)
        assert set(_ids(hits_b)) == b_ids, query


def test_search_ranks_semantically(memory: VectorMemory) -> None:
    memory.add(A_RECORDS + B_RECORDS)
    assert memory.search("A", "please send me last month's invoice again", k=1)[0].id == "a-1"
    assert memory.search("A", "single sign-on with Okta", k=2)[0].id == "a-2"
    assert memory.search("B", "cancel subscription", k=4)[0].id == "b-4"
    top = memory.search("A", "How do I add more seats to the Growth plan?", k=2)
    assert top[0].id == "a-4"
    assert top[0].score == pytest.approx(1.0, abs=1e-3)  # identical text
    assert all(-1.0 - 1e-5 <= h.score <= 1.0 + 1e-5 for h in top)


def test_upsert_is_idempotent(memory: VectorMemory) -> None:
    memory.add(A_RECORDS)
    memory.add(A_RECORDS)
    memory.add([A_RECORDS[0], A_RECORDS[0]])  # duplicate ids within one batch
    assert memory.count("A") == len(A_RECORDS)
    assert memory.count() == len(A_RECORDS)

    edited = A_RECORDS[1].model_copy(update={"text": "Please enable SCIM provisioning"})
    memory.add([edited])
    assert memory.count("A") == len(A_RECORDS)
    hit = memory.search("A", "SCIM user provisioning", k=1)[0]
    assert hit.id == "a-2"
    assert hit.text == "Please enable SCIM provisioning"


def test_record_moved_to_another_customer(memory: VectorMemory) -> None:
    memory.add(A_RECORDS)
    memory.add([A_RECORDS[0].model_copy(update={"customer_id": "B"})])
    assert memory.count("A") == len(A_RECORDS) - 1
    assert memory.count("B") == 1
    assert "a-1" not in _ids(memory.search("A", A_RECORDS[0].text, k=10))
    assert _ids(memory.search("B", A_RECORDS[0].text, k=10)) == ["a-1"]


def test_metadata_round_trips(memory: VectorMemory) -> None:
    cet = timezone(timedelta(hours=2))
    created = datetime(2025, 6, 30, 23, 15, 7, 123456, tzinfo=cet)
    record = _rec(
        "m-1",
        "C",
        "The webhook to our CRM stopped firing yesterday",
        conversation_id="conv-xyz",
        channel="whatsapp",
        direction="outbound",
        created_at=created,
    )
    memory.add([record])
    (hit,) = memory.search("C", "webhook not firing", k=5)
    assert hit.model_dump(exclude={"score"}) == record.model_dump()
    assert hit.channel == "whatsapp"
    assert hit.conversation_id == "conv-xyz"
    assert hit.direction == "outbound"
    assert hit.created_at == created
    assert hit.created_at.utcoffset() == timedelta(hours=2)


def test_naive_created_at_is_taken_as_utc(memory: VectorMemory) -> None:
    record = _rec("n-1", "C", "naive timestamps", created_at=datetime(2025, 1, 2, 3, 4, 5))
    assert record.created_at.tzinfo is UTC
    memory.add([record])
    (hit,) = memory.search("C", "timestamps", k=1)
    assert hit.created_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert hit.created_at.utcoffset() == timedelta(0)


def test_empty_results(memory: VectorMemory) -> None:
    assert memory.search("A", "anything") == []  # empty store
    memory.add(A_RECORDS)
    assert memory.search("nobody", "invoice", k=5) == []
    assert memory.search("A", "", k=5) == []
    assert memory.search("A", "   \n\t", k=5) == []
    memory.add([])  # no-op
    assert memory.count() == len(A_RECORDS)
    with pytest.raises(ValueError):
        memory.search("A", "invoice", k=0)


def test_count_and_delete_customer(memory: VectorMemory) -> None:
    memory.add(A_RECORDS + B_RECORDS)
    assert memory.count() == len(A_RECORDS) + len(B_RECORDS)
    assert memory.count("A") == len(A_RECORDS)
    assert memory.count("nobody") == 0
    memory.delete_customer("A")
    memory.delete_customer("nobody")  # no-op
    assert memory.count("A") == 0
    assert memory.count() == len(B_RECORDS)
    assert memory.search("A", "invoice", k=5) == []
    assert len(memory.search("B", "invoice", k=5)) == len(B_RECORDS)


def test_forget_removes_customers_and_single_records(memory: VectorMemory) -> None:
    """Erasure and retention: every record of some customers, and some records of others."""
    forget = getattr(memory, "forget", None)
    if forget is None:
        pytest.skip("this adapter has no forget")  # every adapter in ADAPTERS has one
    memory.add(A_RECORDS + B_RECORDS)
    assert forget(["A", "nobody"], ["b-2", "no-such-record"]) == len(A_RECORDS) + 1
    assert memory.count("A") == 0
    assert sorted(_ids(memory.search("B", "invoice", k=10))) == ["b-1", "b-3", "b-4"]
    assert forget([], []) == 0
    assert memory.count() == len(B_RECORDS) - 1


# --------------------------------------------------------------------------- adapter parity


def test_chroma_scores_match_exact_search(tmp_path: Path, embedder: MiniLMEmbedder) -> None:
    exact = InMemoryVectorMemory(embedder)
    chroma = ChromaVectorMemory.persistent(tmp_path, embedder)
    for m in (exact, chroma):
        m.add(A_RECORDS + B_RECORDS)
    for query in QUERIES:
        want = exact.search("A", query, k=10)
        got = chroma.search("A", query, k=10)
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-4)
        assert {h.id for h in got} == {h.id for h in want}


# --------------------------------------------------------------------------- reopening


def test_reopened_collection_uses_our_embedding_function(
    tmp_path: Path, embedder: MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "chroma"
    client = chromadb.PersistentClient(path=str(path), settings=chroma_settings())
    ChromaVectorMemory(client, embedder).add(A_RECORDS + B_RECORDS)
    del client
    # Chroma caches one System per path; drop it so the next client really reopens.
    SharedSystemClient.clear_system_cache()

    # Chroma's default function would try to download a model: make that loud.
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    def _no_default(*_: Any, **__: Any) -> Any:
        raise AssertionError("Chroma's default embedding function was used")

    monkeypatch.setattr(ONNXMiniLM_L6_V2, "__call__", _no_default)
    calls: list[list[str]] = []
    real_embed = MiniLMEmbedder.embed

    def spy(self: MiniLMEmbedder, texts: Any) -> Any:
        calls.append(list(texts))
        return real_embed(self, texts)

    monkeypatch.setattr(MiniLMEmbedder, "embed", spy)

    reopened = chromadb.PersistentClient(path=str(path), settings=chroma_settings())
    collection = reopened.get_collection("messages")  # no embedding_function passed
    ef = collection.configuration["embedding_function"]
    assert isinstance(ef, MiniLMEmbeddingFunction)
    assert ef.name() == "journey-minilm-int8"
    assert collection.configuration["hnsw"]["space"] == "cosine"
    assert collection.count() == len(A_RECORDS) + len(B_RECORDS)

    result = collection.query(
        query_texts=["single sign-on with Okta"],
        n_results=2,
        where={"customer_id": "A"},
        include=["documents", "metadatas", "distances"],
    )
    assert calls == [["single sign-on with Okta"]]
    assert result["ids"][0][0] == "a-2"
    assert result["metadatas"][0][0]["customer_id"] == "A"
    assert result["distances"][0][0] < 0.5

    # ... and the adapter keeps working on the reopened store.
    again = ChromaVectorMemory(reopened, embedder)
    assert again.count("A") == len(A_RECORDS)
    assert again.search("A", "invoice for March", k=1)[0].id == "a-1"
    SharedSystemClient.clear_system_cache()


def test_a_chroma_index_not_yet_on_disk_costs_one_retry_then_no_history_not_a_failed_turn(
    tmp_path: Path, embedder: MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Under load, a Chroma server can answer a new collection's first query with "Error
    creating hnsw segment reader: Nothing found on disk" (chroma-core/chroma#4212; seen as a
    500 on POST /v1/messages with two API processes). The real collection is queried; its
    answer is replaced by that error for the first ``fail`` calls."""
    memory = ChromaVectorMemory.persistent(tmp_path / "chroma", embedder, collection="race")
    memory.add([_rec("m1", "cus_a", "Does the Growth plan include WhatsApp?")])
    real = memory._query
    calls = {"n": 0}

    def flaky(fail: int) -> Callable[..., Any]:
        def query(*args: Any) -> Any:
            calls["n"] += 1
            if calls["n"] <= fail:
                raise chromadb.errors.InternalError(
                    "Error executing plan: Internal error: Error creating hnsw segment reader: "
                    "Nothing found on disk")
            return real(*args)
        return query

    monkeypatch.setattr(memory, "_query", flaky(1))
    assert _ids(memory.search("cus_a", "WhatsApp on Growth")) == ["m1"] and calls["n"] == 2
    calls["n"] = 0
    monkeypatch.setattr(memory, "_query", flaky(2))
    assert memory.search("cus_a", "WhatsApp on Growth") == []
    assert "no history for cus_a this turn" in caplog.text
    calls["n"] = 0
    monkeypatch.setattr(memory, "_query", lambda *a: (_ for _ in ()).throw(
        chromadb.errors.InternalError("something else")))
    with pytest.raises(chromadb.errors.InternalError, match="something else"):
        memory.search("cus_a", "WhatsApp")
