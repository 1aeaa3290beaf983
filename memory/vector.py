"""Vector memory: the adapters of the ``core.ports.VectorMemory`` port (Chroma, and an
in-process twin for tests and evals).

Every search is scoped to one customer; a customer's memory is never visible
from another customer's search, whatever the query or ``k``.
"""

from __future__ import annotations

import ctypes
import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import closing, suppress
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

log = logging.getLogger(__name__)

__all__ = [
    "ChromaVectorMemory",
    "InMemoryVectorMemory",
    "MemoryHit",
    "MemoryRecord",
    "VectorMemory",
    "WriteBehindMemory",
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
    # a batch (many turns' messages, written behind them): what retrieval embedded already
    # is reused, the rest is embedded in one batch
    with embedder._cache_lock:
        known = [embedder._cache.get(r.text) for r in records]
    missing = [i for i, v in enumerate(known) if v is None]
    if len(missing) * 2 > len(records):
        return embedder.embed([r.text for r in records])
    if missing:
        for i, vector in zip(missing, embedder.embed([records[i].text for i in missing]),
                             strict=True):
            known[i] = vector
    return np.stack([v for v in known if v is not None])


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
        #: the embedded database's folder (None: a Chroma server's files are its own)
        self.path: Path | None = None

    @classmethod
    def persistent(
        cls, path: Path, embedder: MiniLMEmbedder, collection: str = "messages"
    ) -> ChromaVectorMemory:
        """An embedded Chroma database stored under ``path``."""
        blank_freed_memory()
        client = chromadb.PersistentClient(path=str(path), settings=chroma_settings())
        memory = cls(client, embedder, collection)
        memory.path = Path(path)
        return memory

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
        try:
            result = self._query(vector, k, customer_id)
        except chromadb.errors.InternalError as exc:
            # Chroma answers "Nothing found on disk" while another process has not flushed a
            # new collection's index yet (chroma-core/chroma#4212): once more, then no
            # history rather than a failed turn
            if "Nothing found on disk" not in str(exc):
                raise
            time.sleep(0.2)
            try:
                result = self._query(vector, k, customer_id)
            except chromadb.errors.InternalError:
                log.warning("vector memory: no history for %s this turn: %s", customer_id, exc)
                return []
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

    def _query(self, vector: FloatArray, k: int, customer_id: str) -> Any:
        return self._collection.query(
            query_embeddings=vector.reshape(1, -1),
            n_results=k,
            where={"customer_id": customer_id},
            include=["documents", "metadatas", "distances"],
        )

    def count(self, customer_id: str | None = None) -> int:
        if customer_id is None:
            return int(self._collection.count())
        got = self._collection.get(where={"customer_id": customer_id}, include=[])
        return len(got["ids"])

    def delete_customer(self, customer_id: str) -> None:
        self._collection.delete(where={"customer_id": customer_id})

    def forget(self, customer_ids: Sequence[str], record_ids: Sequence[str] = ()) -> int:
        """Delete every record of ``customer_ids`` and the records ``record_ids`` (erasure,
        retention), and make it final on disk; returns how many records were deleted.

        Chroma's own SQLite file keeps a deleted record's document in its write-ahead log
        (``embeddings_queue``, purged only up to what the vector index last persisted) and in
        its full-text index's segments. For an embedded database the log's entries that
        carry these records' data are removed (the deletions stay, so the vector index
        replays them), the full-text index is merged (FTS5 ``optimize``) and the file is
        vacuumed. A Chroma server's files are its operator's (``chroma vacuum``)."""
        ids: set[str] = set()
        wanted = list(dict.fromkeys(record_ids))
        for start in range(0, len(wanted), self._max_batch):  # only those that exist count
            ids.update(self._collection.get(ids=wanted[start:start + self._max_batch],
                                            include=[])["ids"])
        for start in range(0, len(customer_ids), 100):
            where = {"customer_id": {"$in": list(customer_ids[start:start + 100])}}
            ids.update(self._collection.get(where=where, include=[])["ids"])
        found = sorted(ids)
        for start in range(0, len(found), self._max_batch):
            self._collection.delete(ids=found[start:start + self._max_batch])
        if self.path is not None and found:
            _scrub(self.path / "chroma.sqlite3", found)
        return len(found)

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


#: glibc's ``mallopt`` parameter that fills memory with a byte on ``malloc`` and ``free``
_M_PERTURB = -6


def blank_freed_memory() -> None:
    """Make glibc fill memory on ``malloc`` and ``free`` (``M_PERTURB``), once per process.

    Chroma's vector index (hnswlib) is allocated with ``malloc`` and written to disk at its
    whole capacity, so its unused slots would carry whatever that memory held before: bytes of
    other messages, or of a customer since erased (found by the erasure test's raw-file scan,
    one run in two). With this they carry a constant byte. Elsewhere than glibc: nothing."""
    global _blanked
    if _blanked or not sys.platform.startswith("linux"):
        return
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(_M_PERTURB, 0xA5)
    _blanked = True


_blanked = False


def _scrub(database: Path, ids: Sequence[str]) -> None:
    """Remove what Chroma's SQLite file still holds of the deleted records ``ids``."""
    with closing(sqlite3.connect(database, timeout=60)) as conn:
        conn.execute("PRAGMA secure_delete=ON")
        for start in range(0, len(ids), 500):
            part = list(ids[start:start + 500])
            marks = ",".join("?" * len(part))
            # operation 3 is a deletion (chroma_log's codes: add, update, upsert, delete): it
            # carries no data and the vector index may need to replay it
            conn.execute(f"DELETE FROM embeddings_queue WHERE id IN ({marks}) "
                         "AND operation != 3", part)
        # merge the full-text index's segments, so the deleted documents' terms go (a Chroma
        # without the full-text table has nothing to merge)
        with suppress(sqlite3.OperationalError):
            conn.execute("INSERT INTO embedding_fulltext_search(embedding_fulltext_search) "
                         "VALUES ('optimize')")
        conn.commit()
        conn.execute("VACUUM")


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

    def forget(self, customer_ids: Sequence[str], record_ids: Sequence[str] = ()) -> int:
        """Delete every record of ``customer_ids`` and the records ``record_ids``."""
        with self._lock:
            gone = {r for c in customer_ids for r in self._by_customer.pop(c, {})}
            gone |= {r for r in record_ids if r in self._owner}
            for record_id in gone:
                owner = self._owner.pop(record_id, None)
                if owner is not None:
                    self._by_customer.get(owner, {}).pop(record_id, None)
            return len(gone)

    def reassign(self, from_customer: str, to_customer: str) -> int:
        """Move one customer's records to another (two profiles were merged)."""
        with self._lock:
            moved = self._by_customer.pop(from_customer, {})
            target = self._by_customer.setdefault(to_customer, {})
            for record_id, (record, vector) in moved.items():
                target[record_id] = (record.model_copy(update={"customer_id": to_customer}), vector)
                self._owner[record_id] = to_customer
            return len(moved)


class WriteBehindMemory:
    """A :class:`VectorMemory` whose writes land behind the caller's back: ``add`` hands the
    records to a background thread, which waits ``window_s`` for more, then embeds and upserts
    what has gathered in one batch (a turn does not wait for Chroma's on-disk upsert and its
    fsyncs, and many turns share one upsert).

    Until a record has landed it stays in an in-process buffer that ``search`` merges, scored
    the same way (cosine of the same embeddings), so a customer's next turn in this process
    retrieves its latest messages as if the write had been synchronous. Every other operation
    (``count``, ``delete_customer``, ``forget``, ``reassign``) first waits for the buffer to
    land, so erasure and merges see every record. ``close`` lands what is left.

    Another process's next turn reads the latest messages from the SQL store (a turn's recent
    messages); a record that has not landed when the process dies is not in vector memory."""

    def __init__(self, inner: VectorMemory, embedder: MiniLMEmbedder, *,
                 window_s: float = 0.25, max_batch: int = 256,
                 name: str = "vector-write-behind") -> None:
        self.inner = inner
        self._embedder = embedder
        #: records gather this long (or up to ``max_batch``) before one upsert lands them all
        self.window_s = window_s
        self.max_batch = max_batch
        self._first_at = 0.0
        self._flushing = 0
        self._cond = threading.Condition()
        #: record id -> record, not landed yet (the newest version of an id wins)
        self._pending: dict[str, MemoryRecord] = {}
        #: records the background thread is writing now (still searchable here)
        self._landing: dict[str, MemoryRecord] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def __getattr__(self, name: str) -> Any:  # the wrapped memory's extras (collection, path)
        return getattr(self.inner, name)

    def add(self, records: Sequence[MemoryRecord]) -> None:
        if not records:
            return
        with self._cond:
            if self._closed:
                self.inner.add(records)
                return
            if not self._pending:
                self._first_at = time.monotonic()
            for record in records:
                self._pending[record.id] = record
            self._cond.notify_all()

    def pending(self, customer_id: str | None = None) -> list[MemoryRecord]:
        """The records not landed yet (of ``customer_id``)."""
        with self._cond:
            records = {**self._landing, **self._pending}.values()
            return [r for r in records if customer_id is None or r.customer_id == customer_id]

    def search(self, customer_id: str, query: str, k: int = 5) -> list[MemoryHit]:
        _check_k(k)
        buffered = self.pending(customer_id)
        hits = self.inner.search(customer_id, query, k)
        if not buffered or not query.strip():
            return hits
        query_vector = self._embedder.embed_one(query)
        fresh = [
            MemoryHit(**r.model_dump(include=set(MemoryRecord.model_fields)),
                      score=float(self._embedder.embed_one(r.text) @ query_vector))
            for r in buffered
        ]
        ids = {h.id for h in fresh}
        merged = fresh + [h for h in hits if h.id not in ids]
        merged.sort(key=lambda h: h.score, reverse=True)
        return merged[:k]

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every record handed to ``add`` so far has landed (False: timed out)."""
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: (not self._pending and not self._landing)
                                           or not self._thread.is_alive(), timeout_s)
            finally:
                self._flushing -= 1

    def count(self, customer_id: str | None = None) -> int:
        self.flush()
        return self.inner.count(customer_id)

    def delete_customer(self, customer_id: str) -> None:
        self.flush()
        self.inner.delete_customer(customer_id)

    def forget(self, customer_ids: Sequence[str], record_ids: Sequence[str] = ()) -> int:
        self.flush()
        forget = getattr(self.inner, "forget", None)
        if forget is not None:
            return int(forget(customer_ids, record_ids))
        gone = 0
        for customer_id in customer_ids:
            gone += self.inner.count(customer_id)
            self.inner.delete_customer(customer_id)
        return gone

    def reassign(self, from_customer: str, to_customer: str) -> int:
        self.flush()
        return self.inner.reassign(from_customer, to_customer)

    def close(self) -> None:
        """Land what is buffered and stop the background thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending) or self._closed)
                if not self._pending:  # closed, nothing left
                    return
                # gather a batch: one upsert (Chroma holds the GIL through it, fsyncs and
                # all, so every thread of the process waits for it) for many turns' records
                while not (self._closed or self._flushing
                           or len(self._pending) >= self.max_batch):
                    left = self._first_at + self.window_s - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                self._landing, self._pending = self._pending, {}
                batch = list(self._landing.values())
            try:
                self.inner.add(batch)
            except Exception:  # the messages stay in SQL; the next batches still land
                log.exception("vector memory: %d records were not stored", len(batch))
            with self._cond:
                self._landing = {}
                self._cond.notify_all()
