"""Vector memory: the adapters of the ``core.ports.VectorMemory`` port (Chroma, and an
in-process twin for tests and evals).

Every search is scoped to one customer; a customer's memory is never visible
from another customer's search, whatever the query or ``k``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Metadata
from chromadb.config import Settings

from core.ports import MemoryHit, MemoryRecord, VectorMemory
from memory.embeddings import FloatArray, MiniLMEmbedder, MiniLMEmbeddingFunction

__all__ = [
    "ChromaVectorMemory",
    "InMemoryVectorMemory",
    "MemoryHit",
    "MemoryRecord",
    "VectorMemory",
    "chroma_settings",
]



def chroma_settings() -> Settings:
    """Chroma client settings: no telemetry, no resets."""
    return Settings(anonymized_telemetry=False, allow_reset=False)


SMALL_BATCH = 4


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _dedupe(records: Sequence[MemoryRecord]) -> list[MemoryRecord]:
    """Last record wins for repeated ids (Chroma rejects duplicates in a batch)."""
    return list({r.id: r for r in records}.values())


def _embed_records(embedder: MiniLMEmbedder, records: list[MemoryRecord]) -> FloatArray:
    if len(records) <= SMALL_BATCH:
        # A turn stores its inbound message (already embedded for retrieval: a cache hit)
        # and a reply or two; embed_one reuses and warms the cache.
        return np.stack([embedder.embed_one(r.text) for r in records])
    return embedder.embed([r.text for r in records])


class ChromaVectorMemory:
    """:class:`VectorMemory` on a Chroma collection (local or client/server)."""

    def __init__(
        self,
        client: ClientAPI,
        embedder: MiniLMEmbedder,
        collection: str = "messages",
    ) -> None:
        self._client = client
        self._embedder = embedder
        self._collection: Collection = client.get_or_create_collection(
            name=collection,
            embedding_function=MiniLMEmbeddingFunction(embedder),  # type: ignore[arg-type,unused-ignore]
            configuration={"hnsw": {"space": "cosine"}},
        )
        space = (self._collection.configuration_json.get("hnsw") or {}).get("space")
        if space not in (None, "cosine"):
            raise ValueError(
                f"Chroma collection {collection!r} uses distance {space!r}; "
                "vector memory needs 'cosine'"
            )
        self._max_batch = max(1, client.get_max_batch_size())

    @classmethod
    def persistent(
        cls, path: Path, embedder: MiniLMEmbedder, collection: str = "messages"
    ) -> ChromaVectorMemory:
        """An embedded Chroma database stored under ``path``."""
        client = chromadb.PersistentClient(path=str(path), settings=chroma_settings())
        return cls(client, embedder, collection)

    @classmethod
    def http(
        cls,
        host: str,
        port: int,
        embedder: MiniLMEmbedder,
        ssl: bool = False,
        collection: str = "messages",
    ) -> ChromaVectorMemory:
        """A Chroma server at ``host:port`` (``chroma run``)."""
        client = chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=chroma_settings())
        return cls(client, embedder, collection)

    @property
    def collection(self) -> Collection:
        return self._collection

    def add(self, records: Sequence[MemoryRecord]) -> None:
        unique = _dedupe(records)
        for start in range(0, len(unique), self._max_batch):
            batch = unique[start : start + self._max_batch]
            vectors = _embed_records(self._embedder, batch)
            metadatas: list[Metadata] = [
                {
                    "customer_id": r.customer_id,
                    "conversation_id": r.conversation_id,
                    "channel": r.channel,
                    "direction": r.direction,
                    "created_at": r.created_at.isoformat(),
                    "created_ts": r.created_at.timestamp(),
                }
                for r in batch
            ]
            self._collection.upsert(
                ids=[r.id for r in batch],
                embeddings=list(vectors),
                documents=[r.text for r in batch],
                metadatas=metadatas,
            )

    def search(self, customer_id: str, query: str, k: int = 5) -> list[MemoryHit]:
        _check_k(k)
        if not query.strip():
            return []
        vector = self._embedder.embed_one(query)
        result = self._collection.query(
            query_embeddings=vector.reshape(1, -1),
            n_results=k,
            where={"customer_id": customer_id},
            include=["documents", "metadatas", "distances"],
        )
        ids = result["ids"][0]
        documents = (result["documents"] or [[]])[0]
        metadatas = (result["metadatas"] or [[]])[0]
        distances = (result["distances"] or [[]])[0]
        hits = [
            _hit_from_chroma(id_, doc, meta, dist)
            for id_, doc, meta, dist in zip(ids, documents, metadatas, distances, strict=True)
        ]
        # Defence in depth: the where filter must already guarantee this.
        hits = [h for h in hits if h.customer_id == customer_id]
        hits.sort(key=lambda h: h.score, reverse=True)
        return hits

    def count(self, customer_id: str | None = None) -> int:
        if customer_id is None:
            return int(self._collection.count())
        got = self._collection.get(where={"customer_id": customer_id}, include=[])
        return len(got["ids"])

    def delete_customer(self, customer_id: str) -> None:
        self._collection.delete(where={"customer_id": customer_id})

    def reassign(self, from_customer: str, to_customer: str) -> int:
        """Move one customer's records to another (two profiles were merged)."""
        got = self._collection.get(where={"customer_id": from_customer}, include=["metadatas"])
        ids = list(got["ids"])
        if not ids:
            return 0
        metadatas: list[Metadata] = [
            {**dict(meta or {}), "customer_id": to_customer} for meta in (got["metadatas"] or [])
        ]
        self._collection.update(ids=ids, metadatas=metadatas)
        return len(ids)


def _hit_from_chroma(
    id_: str, document: str | None, meta: Mapping[str, Any], distance: float
) -> MemoryHit:
    return MemoryHit(
        id=id_,
        customer_id=str(meta["customer_id"]),
        conversation_id=str(meta["conversation_id"]),
        channel=str(meta["channel"]),
        direction=meta["direction"],
        text=document or "",
        created_at=datetime.fromisoformat(str(meta["created_at"])),
        score=1.0 - float(distance),
    )


class InMemoryVectorMemory:
    """:class:`VectorMemory` in process memory: exact (brute-force) cosine search."""

    def __init__(self, embedder: MiniLMEmbedder) -> None:
        self._embedder = embedder
        self._lock = threading.Lock()
        # customer_id -> record id -> (record, unit vector)
        self._by_customer: dict[str, dict[str, tuple[MemoryRecord, FloatArray]]] = {}
        self._owner: dict[str, str] = {}  # record id -> customer_id

    def add(self, records: Sequence[MemoryRecord]) -> None:
        unique = _dedupe(records)
        if not unique:
            return
        vectors = _embed_records(self._embedder, unique)
        with self._lock:
            for record, vector in zip(unique, vectors, strict=True):
                previous = self._owner.get(record.id)
                if previous is not None and previous != record.customer_id:
                    self._by_customer[previous].pop(record.id, None)
                    if not self._by_customer[previous]:
                        del self._by_customer[previous]
                self._owner[record.id] = record.customer_id
                stored = MemoryRecord.model_validate(
                    record.model_dump(include=set(MemoryRecord.model_fields))
                )
                self._by_customer.setdefault(record.customer_id, {})[record.id] = (
                    stored,
                    vector,
                )

    def search(self, customer_id: str, query: str, k: int = 5) -> list[MemoryHit]:
        _check_k(k)
        if not query.strip():
            return []
        with self._lock:
            entries = list(self._by_customer.get(customer_id, {}).values())
        if not entries:
            return []
        query_vector = self._embedder.embed_one(query)
        matrix = np.stack([vector for _, vector in entries])
        scores = matrix @ query_vector
        order = np.argsort(-scores, kind="stable")[:k]
        return [MemoryHit(**entries[i][0].model_dump(), score=float(scores[i])) for i in order]

    def count(self, customer_id: str | None = None) -> int:
        with self._lock:
            if customer_id is None:
                return len(self._owner)
            return len(self._by_customer.get(customer_id, {}))

    def delete_customer(self, customer_id: str) -> None:
        with self._lock:
            for record_id in self._by_customer.pop(customer_id, {}):
                self._owner.pop(record_id, None)

    def reassign(self, from_customer: str, to_customer: str) -> int:
        """Move one customer's records to another (two profiles were merged)."""
        with self._lock:
            moved = self._by_customer.pop(from_customer, {})
            target = self._by_customer.setdefault(to_customer, {})
            for record_id, (record, vector) in moved.items():
                target[record_id] = (record.model_copy(update={"customer_id": to_customer}), vector)
                self._owner[record_id] = to_customer
            return len(moved)
