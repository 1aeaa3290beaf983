"""Ports: what the agent needs from the world, as Protocols. ``memory/`` and ``channels/``
hold the adapters; the wiring (``journey/runtime.py``) is the only place naming them.

    TurnStore      the profile and turn store a turn reads and commits to (``memory.store``)
    VectorMemory   per-customer semantic memory (``memory.vector``: Chroma, or in-process)
    Embedder       text → unit vectors (``memory.embeddings``: MiniLM on ONNX)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field, field_validator

from core.clock import utc
from core.domain import (
    Approval,
    Conversation,
    CustomerProfile,
    Decision,
    Direction,
    Event,
    Handback,
    Handoff,
    Message,
)
from core.effects import LedgerEntry, TurnEffects


class MemoryRecord(BaseModel):
    """One remembered message. ``created_at`` is timezone-aware (naive is UTC)."""

    id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    conversation_id: str
    channel: str
    direction: Direction
    text: str
    created_at: datetime

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return utc(value)


class MemoryHit(MemoryRecord):
    """A search result; ``score`` is cosine similarity, higher is closer."""

    score: float


@runtime_checkable
class VectorMemory(Protocol):
    def add(self, records: Sequence[MemoryRecord]) -> None:
        """Upsert ``records`` by id (adding the same id again replaces it)."""
        ...

    def search(self, customer_id: str, query: str, k: int = 5) -> list[MemoryHit]:
        """Up to ``k`` of ``customer_id``'s records closest to ``query``, best first.

        Empty for an unknown customer or a blank query. Never returns another
        customer's records.
        """
        ...

    def count(self, customer_id: str | None = None) -> int:
        """Records held for ``customer_id``, or in total when it is None."""
        ...

    def reassign(self, from_customer: str, to_customer: str) -> int: ...

    def delete_customer(self, customer_id: str) -> None:
        """Forget every record of ``customer_id``."""
        ...


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> Any:
        """Embed ``texts``: a float32 array ``(len(texts), dim)``, rows unit-norm."""
        ...


class TurnStore(Protocol):
    """What a turn reads and writes; every write of a turn is one ``commit_turn``."""

    def get_customer(self, customer_id: str) -> CustomerProfile | None: ...

    def get_conversation(self, conversation_id: str) -> Conversation | None: ...

    def messages(
        self, *, conversation_id: str | None = None, customer_id: str | None = None,
        limit: int | None = None,
    ) -> list[Message]: ...

    def recent_events(
        self, customer_id: str, since: datetime, limit: int = 200
    ) -> list[Event]: ...

    def active_handoff(self, conversation_id: str) -> Handoff | None: ...

    def handback(self, conversation_id: str, since: datetime | None = None) -> Handback | None:
        ...

    def ledger(self, customer_id: str, since: datetime) -> list[LedgerEntry]: ...

    def stalled_turns(self, conversation_id: str, limit: int = 10) -> int: ...

    def commit_turn(self, decision: Decision, effects: TurnEffects) -> Decision: ...

    def get_approval(self, approval_id: str) -> Approval | None: ...

    def decide_approval(
        self, approval: Approval, status: str, *, by: str, note: str | None,
        result: dict[str, Any], effects: TurnEffects,
    ) -> Approval: ...
