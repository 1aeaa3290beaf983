"""Erasure, access and retention (GDPR art. 15, 17, 20; CCPA): one person taken out of every
store, or handed over as JSON, and old conversations aged out.

What a person is made of, and where it lives:

    the SQL store      their rows in every table (``memory.erasure``)
    checkpoints        the LangGraph threads of their turns: ``turn:<message id>`` for a turn
                       on a message, ``turn:<job id>`` for a proactive one (``agent.graph``)
    vector memory      one record per message, keyed by the message id, tagged with the
                       customer id (``memory.vector``)
    files              the devbox transport's ``<data_dir>/outbox/<channel>.jsonl`` lines

An erasure (:meth:`ErasureService.erase`) cancels the person's pending jobs and undelivered
messages, waits for a turn in flight (it holds their open conversations' locks, as a turn
does), removes the checkpoints, the vectors and the file lines, then deletes every row in one
transaction that also writes the audit record (no personal data: when, by whom, counts, keyed
hashes of the identities), and finally makes the deletion final on disk: SQLite files are
vacuumed and their write-ahead logs truncated, Chroma's log and full-text index are purged of
the records. Repeating it returns the first audit record.
"""

from __future__ import annotations

import fcntl
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from langgraph.checkpoint.base import BaseCheckpointSaver
from pydantic import BaseModel

from core.clock import utc
from core.errors import NotFound
from core.ports import VectorMemory
from memory.checkpoints import forget_threads
from memory.erasure import Holdings
from memory.locks import ConversationLocks
from memory.store import Store

log = logging.getLogger(__name__)


@runtime_checkable
class ForgettingMemory(Protocol):
    def forget(self, customer_ids: Sequence[str], record_ids: Sequence[str] = ()) -> int:
        """Delete these customers' records and these records, final on disk."""
        ...


class Erasure(BaseModel):
    """The audit record of an erasure (no personal data)."""

    id: str
    customer_id: str
    merged_ids: list[str]
    erased_at: datetime
    by: str
    #: rows removed per table, ``checkpoint_threads``, ``vector_records``, ``file_lines``,
    #: ``identities_hashed``
    counts: dict[str, int]
    #: the consent the erasure withdrew: channel, purpose, previous status, source "erasure"
    consent: list[dict[str, str]]
    #: the person wrote again afterwards and has a fresh profile: how often, when
    recreated: dict[str, Any] | None = None
    #: False: this request erased them; True: they had been erased already
    already: bool = False

    @classmethod
    def of(cls, record: dict[str, Any], *, already: bool) -> Erasure:
        return cls(
            id=record["id"], customer_id=record["customer_id"],
            merged_ids=list(record["merged_ids"] or []), erased_at=utc(record["erased_at"]),
            by=record["by"], counts=dict(record["counts"]), consent=list(record["consent"]),
            recreated=record.get("recreated"), already=already)


class ErasureService:
    def __init__(
        self,
        store: Store,
        checkpointer: BaseCheckpointSaver[Any],
        memory: VectorMemory,
        locks: ConversationLocks,
        data_dir: Path,
        *,
        retention_days: int = 0,
    ) -> None:
        self.store = store
        self.checkpointer = checkpointer
        self.memory = memory
        self.locks = locks
        #: the devbox transport's files (``channels.devbox``)
        self.outbox_dir = data_dir / "outbox"
        self.retention_days = retention_days
        #: called with the customer id after an erasure (e.g. to wake web-chat streams)
        self.on_erased: list[Callable[[str], object]] = []

    # --- access (art. 15, 20) ---------------------------------------------------------------

    def export(self, customer_id: str) -> dict[str, Any]:
        """Everything held about the customer (a merged id exports the profile it is now)."""
        ids = self.store.erasure.customer_set(customer_id)
        if ids is None:
            raise NotFound(self.missing(customer_id))
        return self.store.erasure.export(ids)

    # --- erasure (art. 17) ------------------------------------------------------------------

    def erase(self, customer_id: str, *, by: str) -> Erasure:
        """Erase the customer (and every profile merged into them) from every store; ``by``
        is who asked. Erasing them again returns the first audit record (``already``)."""
        repo = self.store.erasure
        ids = repo.customer_set(customer_id)
        if ids is None:
            done = repo.erasure(customer_id)
            if done is None:
                raise NotFound(f"no customer {customer_id!r}")
            return Erasure.of(done, already=True)
        repo.stop_work(ids, "cancelled: the customer is being erased")
        first = repo.holdings(ids)
        with self.locks.hold_many(first.open_conversations):
            # a turn that was running has finished: what it wrote is in the holdings now
            repo.stop_work(ids, "cancelled: the customer is being erased")
            holdings = repo.holdings(ids)
            counts = {
                "checkpoint_threads": forget_threads(self.checkpointer, holdings.thread_ids),
                "vector_records": self._forget_vectors(ids, holdings.message_ids),
                "file_lines": self._scrub_files(_of_person(holdings)),
            }
            record = repo.erase(holdings, by=by, erasure_id=self.store.ids("ers"),
                                extra_counts=counts)
        repo.compact()
        for hook in self.on_erased:
            hook(holdings.customer_id)
        log.info("erased customer %s (%d merged into it) by %s", ids[0], len(ids) - 1, by)
        return Erasure.of(record, already=False)

    def missing(self, customer_id: str) -> str:
        """Why ``customer_id`` is not found: erased (when), or never known."""
        done = self.store.erasure.erasure(customer_id)
        if done is not None:
            return f"customer {customer_id!r} was erased at {utc(done['erased_at']).isoformat()}"
        return f"no customer {customer_id!r}"

    def _forget_vectors(self, customer_ids: Sequence[str], record_ids: Sequence[str]) -> int:
        if isinstance(self.memory, ForgettingMemory):
            return self.memory.forget(customer_ids, record_ids)
        gone = 0
        for customer_id in customer_ids:
            gone += self.memory.count(customer_id)
            self.memory.delete_customer(customer_id)
        return gone

    def _scrub_files(self, drop: Callable[[dict[str, Any]], bool]) -> int:
        """Remove the lines ``drop`` selects from the devbox files, rewriting each in place
        under the lock the transport writes with (so no delivery is lost meanwhile)."""
        removed = 0
        if not self.outbox_dir.is_dir():
            return 0
        for path in sorted(self.outbox_dir.glob("*.jsonl")):
            with path.open("r+", encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
                lines = handle.readlines()
                kept = [raw for raw in lines if not _dropped(raw, drop)]
                if len(kept) == len(lines):
                    continue
                removed += len(lines) - len(kept)
                handle.seek(0)
                handle.write("".join(kept))
                handle.truncate()
                handle.flush()
        return removed

    # --- retention --------------------------------------------------------------------------

    def purge_expired(self) -> dict[str, int]:
        """Purge messages (with the turns decided on them), behavioural events, their
        checkpoints, vectors and devbox lines older than ``retention_days``; nothing when
        it is 0."""
        if self.retention_days <= 0:
            return {}
        cutoff = self.store.clock.now() - timedelta(days=self.retention_days)
        purged = self.store.erasure.purge_before(cutoff)
        counts = dict(purged.counts)
        if purged.message_ids or purged.thread_ids:
            counts["checkpoint_threads"] = forget_threads(self.checkpointer, purged.thread_ids)
            counts["vector_records"] = self._forget_vectors([], purged.message_ids)
        counts["file_lines"] = self._scrub_files(lambda line: _older(line, cutoff))
        if any(counts.values()):
            self.store.erasure.compact()
            log.info("retention (%d days): purged %s", self.retention_days, counts)
        return counts


def _dropped(raw: str, drop: Callable[[dict[str, Any]], bool]) -> bool:
    if not raw.strip():
        return False
    try:
        line = json.loads(raw)
    except ValueError:
        return False
    return isinstance(line, dict) and drop(line)


def _of_person(holdings: Holdings) -> Callable[[dict[str, Any]], bool]:
    """Whether a devbox line is the person's: their id, a message of theirs, an address."""
    customers = set(holdings.customer_ids)
    messages = set(holdings.message_ids)
    addresses = {i.value for i in holdings.identities}

    def theirs(line: dict[str, Any]) -> bool:
        return (line.get("customer_id") in customers or line.get("message_id") in messages
                or line.get("to") in addresses)

    return theirs


def _older(line: dict[str, Any], cutoff: datetime) -> bool:
    try:
        written = datetime.fromisoformat(str(line.get("written_at")))
    except ValueError:
        return False
    return utc(written) < cutoff
