"""Vector writes behind the turn (``memory.vector.WriteBehindMemory``): a turn does not wait
for Chroma's upsert, and yet the customer's next turn retrieves the previous turn's messages
while their write has not landed; erasure and merges wait for what is buffered."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from journey.runtime import Container
from journey.turns import InboundRequest
from memory.embeddings import MiniLMEmbedder, get_embedder
from memory.vector import ChromaVectorMemory, MemoryRecord, WriteBehindMemory
from tests import fakes
from tests.conftest import ContainerFactory

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def rec(id_: str, customer: str, text: str) -> MemoryRecord:
    return MemoryRecord(id=id_, customer_id=customer, conversation_id=f"conv-{customer}",
                        channel="email", direction="inbound", text=text, created_at=T0)


class Gate:
    """Holds the background writer's upserts until opened."""

    def __init__(self, chroma: ChromaVectorMemory) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        real = chroma.add

        def held(records: Sequence[MemoryRecord]) -> None:
            self.entered.set()
            self.open.wait()
            real(records)

        chroma.add = held  # type: ignore[method-assign]


@pytest.fixture
def chroma(tmp_path: Path) -> Iterator[ChromaVectorMemory]:
    yield ChromaVectorMemory.persistent(tmp_path / "chroma", get_embedder())


def test_buffered_records_are_searched_as_if_stored(chroma: ChromaVectorMemory) -> None:
    embedder: MiniLMEmbedder = get_embedder()
    memory = WriteBehindMemory(chroma, embedder)
    gate = Gate(chroma)
    records = [rec("m1", "alice", "my invoice was charged twice"),
               rec("m2", "alice", "what plans do you have?"),
               rec("m3", "bob", "my invoice was charged twice")]
    memory.add(records)
    assert gate.entered.wait(30)
    assert chroma.collection.count() == 0  # nothing landed yet
    buffered = memory.search("alice", "double charge on my invoice", k=5)
    assert [h.id for h in buffered] == ["m1", "m2"]  # ranked, and never another customer's
    assert {h.customer_id for h in buffered} == {"alice"}
    gate.open.set()
    assert memory.flush(60)
    assert memory.pending() == [] and memory.count() == 3
    landed = chroma.search("alice", "double charge on my invoice", k=5)
    assert [h.id for h in landed] == [h.id for h in buffered]
    for a, b in zip(buffered, landed, strict=True):
        assert a.model_dump(exclude={"score"}) == b.model_dump(exclude={"score"})
        assert a.score == pytest.approx(b.score, abs=1e-4)
    memory.close()


def test_erasure_waits_for_buffered_records(chroma: ChromaVectorMemory) -> None:
    memory = WriteBehindMemory(chroma, get_embedder())
    gate = Gate(chroma)
    memory.add([rec("m1", "alice", "hello there"), rec("m2", "bob", "hi")])
    assert gate.entered.wait(30)
    threading.Timer(0.2, gate.open.set).start()
    assert memory.forget(["alice"]) == 1  # the buffered record is found and deleted
    assert memory.count("alice") == 0 and memory.count("bob") == 1
    memory.close()


def test_close_lands_what_is_buffered(chroma: ChromaVectorMemory) -> None:
    memory = WriteBehindMemory(chroma, get_embedder())
    memory.add([rec(f"m{i}", "alice", f"message number {i}") for i in range(10)])
    memory.close()
    assert chroma.count("alice") == 10
    memory.add([rec("late", "alice", "after close")])  # written at once now
    assert chroma.count("alice") == 11


def test_next_turn_retrieves_the_previous_turn_while_its_write_is_deferred(
    make_container: ContainerFactory,
) -> None:
    model = fakes.ScriptedModel(*(fakes.content(fakes.decision()) for _ in range(2)))
    c: Container = make_container(brain="openai", llm_mode="json_schema",
                                  llm_http_client=model.client())
    assert isinstance(c.memory, WriteBehindMemory)
    chroma = c.memory.inner
    assert isinstance(chroma, ChromaVectorMemory)
    gate = Gate(chroma)
    # the previous messages can reach the prompt only through vector memory
    c.orchestrator.services.recent_limit = 0

    def ask(text: str) -> str:
        return c.orchestrator.handle_message(InboundRequest.model_validate(
            {"channel": "web_chat", "customer": {"web_chat_id": "wc_q"}, "text": text}
        )).customer_id

    customer = ask("does the Growth plan cover the zanzibarquill studio?")
    assert gate.entered.wait(30)
    ask("and how much is it per month?")
    assert chroma.count(customer) == 0  # the first turn's write has not landed
    prompt = "\n".join(str(m.get("content")) for m in model.requests[1]["messages"])
    # yet the second turn read it, and the first turn's reply, as retrieved history (not as
    # the recent messages, which are "[channel] customer: …")
    assert re.search(r"\[web_chat\] inbound: [^\n]*zanzibarquill", prompt), prompt
    assert re.search(r"\[web_chat\] outbound: [^\n]*Growth includes up to 25 seats", prompt)
    gate.open.set()
    assert c.memory.count(customer) == 4  # two turns: inbound and reply each
