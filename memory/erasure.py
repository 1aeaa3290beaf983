"""Erasure, access and retention in SQL: what the store holds about one person, taken out
(export, GDPR art. 15/20), taken away (erasure, art. 17), or aged out (retention).

A person is a profile and every profile merged into it. Erasing them deletes their rows from
every table in one transaction, children first (the foreign keys hold throughout), and leaves an
audit record without personal data (:data:`erasures`): when, by whom, how many rows of each
kind, and a keyed hash (HMAC-SHA256) of each identity (:data:`erased_identities`), so data that
names an erased identity later can be recognised and refused instead of silently recreating
the person. The key is ``JOURNEY_ERASURE_SALT`` when set, else one generated once and kept in
:data:`erasure_salt`; hashes are compared under both, so setting the key later keeps the
earlier erasures recognisable.

On SQLite the deletes run with ``secure_delete`` and the file is vacuumed and its write-ahead
log checkpointed and truncated afterwards (:meth:`ErasureRepository.compact`), so no page of
the file, nor of its ``-wal``, keeps the deleted bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    delete,
    exists,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from core.clock import Clock, IdFactory, utc
from core.domain import Identity
from memory import db
from memory.checkpoints import checkpoint_wal
from memory.db import erased_identities, erasure_salt, erasures
from memory.outbox import DUE_STATUSES
from memory.profiles import canonical
from memory.sync import SyncOut

# the audit tables are in memory.db (erasures, erased_identities, erasure_salt)


def _children_first() -> list[Table]:
    """Every table with a ``customer_id`` (the product's and any added since), children
    before parents, so the foreign keys hold while a person's rows are deleted."""
    return [t for t in reversed(db.metadata.sorted_tables)
            if "customer_id" in t.c and t.name not in ("customers", erasures.name)]


@dataclass
class Holdings:
    """What the store holds for a person, beyond its rows: what other stores key on."""

    customer_id: str
    #: the profile and every profile merged into it
    customer_ids: list[str]
    identities: list[Identity] = field(default_factory=list)
    #: every message id: the LangGraph thread of an inbound one, the vector record of each
    message_ids: list[str] = field(default_factory=list)
    #: job ids: the LangGraph thread of a proactive turn
    job_ids: list[str] = field(default_factory=list)
    open_conversations: list[str] = field(default_factory=list)
    consent: dict[str, Any] = field(default_factory=dict)

    @property
    def thread_ids(self) -> list[str]:
        """The LangGraph threads of their turns (``agent.graph.thread_config``)."""
        return [f"turn:{i}" for i in dict.fromkeys(self.message_ids + self.job_ids)]


@dataclass
class Purged:
    """What a retention pass removed, and what other stores key on."""

    counts: dict[str, int]
    message_ids: list[str]
    thread_ids: list[str]


def identity_hash(key: bytes, identity: Identity) -> str:
    """HMAC-SHA256 of ``kind:value`` (canonical) under ``key``, hex."""
    ident = canonical(identity)
    return hmac.new(key, f"{ident.kind}:{ident.value}".encode(), hashlib.sha256).hexdigest()


def _rows(conn: Connection, query: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(query).all()]


class ErasureRepository:
    def __init__(self, engine: Engine, clock: Clock, ids: IdFactory,
                 sync: SyncOut | None = None) -> None:
        self.engine = engine
        #: queues ``customer.erased`` for the CRM (``memory.sync``), in the erasure's transaction
        self.sync = sync
        self.clock = clock
        self.ids = ids
        #: ``JOURNEY_ERASURE_SALT`` (the wiring sets it); empty: the generated one
        self.salt = ""
        self._stored: bytes | None = None
        self._sqlite = engine.dialect.name == "sqlite"

    # --- who ------------------------------------------------------------------------------

    def customer_set(self, customer_id: str) -> list[str] | None:
        """The live profile ``customer_id`` is now, then every profile merged into it
        (directly or through others); None when there is no such profile."""
        c = db.customers
        with self.engine.connect() as conn:
            live, seen = customer_id, set()
            while live not in seen:
                seen.add(live)
                row = conn.execute(select(c.c.merged_into).where(c.c.id == live)).first()
                if row is None:
                    return None
                if not row.merged_into:
                    break
                live = row.merged_into
            found, frontier = [live], [live]
            while frontier:
                frontier = [i for i in conn.execute(
                    select(c.c.id).where(c.c.merged_into.in_(frontier))).scalars()
                    if i not in found]
                found += frontier
        return found

    def holdings(self, ids: Sequence[str]) -> Holdings:
        with self.engine.connect() as conn:
            live = conn.execute(select(db.customers).where(db.customers.c.id == ids[0])).first()
            idents = conn.execute(
                select(db.identities.c.kind, db.identities.c.value)
                .where(db.identities.c.customer_id.in_(ids)).order_by(db.identities.c.id)
            ).all()
            messages = conn.execute(
                select(db.messages.c.id).where(db.messages.c.customer_id.in_(ids))
            ).scalars().all()
            jobs = conn.execute(
                select(db.jobs.c.id).where(db.jobs.c.customer_id.in_(ids))
            ).scalars().all()
            decided = conn.execute(
                select(db.decisions.c.job_id).where(db.decisions.c.customer_id.in_(ids),
                                                    db.decisions.c.job_id.is_not(None))
            ).scalars().all()
            open_ = conn.execute(
                select(db.conversations.c.id).where(db.conversations.c.customer_id.in_(ids),
                                                    db.conversations.c.status == "open")
            ).scalars().all()
        return Holdings(
            customer_id=ids[0], customer_ids=list(ids),
            identities=[Identity(kind=k, value=v) for k, v in idents],
            message_ids=list(messages), job_ids=list(dict.fromkeys([*jobs, *decided])),
            open_conversations=list(open_), consent=(live.consent if live else None) or {},
        )

    # --- erasure ----------------------------------------------------------------------------

    def stop_work(self, ids: Sequence[str], reason: str) -> dict[str, int]:
        """Cancel the person's pending jobs and undelivered messages, so no worker starts
        on them while they are erased."""
        now = self.clock.now()
        with self.engine.begin() as conn:
            jobs = conn.execute(
                update(db.jobs).where(db.jobs.c.customer_id.in_(ids),
                                      db.jobs.c.status == "pending")
                .values(status="cancelled", error=reason, updated_at=now)
            ).rowcount
            outbox = conn.execute(
                update(db.outbox).where(db.outbox.c.customer_id.in_(ids),
                                        db.outbox.c.status.in_(DUE_STATUSES))
                .values(status="cancelled", last_error=reason)
            ).rowcount
        return {"jobs": jobs, "outbox": outbox}

    def erase(self, holdings: Holdings, *, by: str, erasure_id: str,
              extra_counts: dict[str, int] | None = None) -> dict[str, Any]:
        """Delete every row of the person in one transaction and record the erasure.
        Returns the audit record."""
        ids = holdings.customer_ids
        now = self.clock.now()
        keys = self._keys()
        counts: dict[str, int] = {}
        with self.engine.begin() as conn:
            if self._sqlite:
                # overwrite what is deleted with zeros (the file is vacuumed afterwards too)
                conn.exec_driver_sql("PRAGMA secure_delete=ON")
            convs = select(db.conversations.c.id).where(db.conversations.c.customer_id.in_(ids))
            handoffs = select(db.handoffs.c.id).where(
                or_(db.handoffs.c.customer_id.in_(ids), db.handoffs.c.conversation_id.in_(convs)))
            events = conn.execute(
                select(db.handoff_events.c.id).where(db.handoff_events.c.handoff_id.in_(handoffs))
            ).scalars().all()
            # a handoff event's signed webhook is a job without a customer
            counts["webhook_jobs"] = conn.execute(delete(db.jobs).where(
                db.jobs.c.dedupe_key.in_([f"webhook:{e}" for e in events]))).rowcount
            counts["handoff_events"] = conn.execute(delete(db.handoff_events).where(
                db.handoff_events.c.handoff_id.in_(handoffs))).rowcount
            decisions = select(db.decisions.c.id).where(
                or_(db.decisions.c.customer_id.in_(ids), db.decisions.c.conversation_id.in_(convs)))
            messages = select(db.messages.c.id).where(
                or_(db.messages.c.customer_id.in_(ids), db.messages.c.conversation_id.in_(convs)))
            for table in _children_first():
                cond: ColumnElement[bool] = table.c.customer_id.in_(ids)
                if "conversation_id" in table.c:
                    cond = or_(cond, table.c.conversation_id.in_(convs))
                if "decision_id" in table.c:
                    cond = or_(cond, table.c.decision_id.in_(decisions))
                if table is db.outbox:
                    cond = or_(cond, table.c.message_id.in_(messages))
                counts[table.name] = conn.execute(delete(table).where(cond)).rowcount
            counts["profile_merges"] = conn.execute(delete(db.profile_merges).where(
                or_(db.profile_merges.c.survivor_id.in_(ids),
                    db.profile_merges.c.merged_id.in_(ids)))).rowcount
            counts["customers"] = conn.execute(
                delete(db.customers).where(db.customers.c.id.in_(ids))).rowcount
            record = {
                "id": erasure_id, "customer_id": holdings.customer_id,
                "merged_ids": ids[1:], "erased_at": now, "by": by,
                "counts": {**counts, **(extra_counts or {}),
                           "identities_hashed": len(holdings.identities)},
                "consent": _withdrawn(holdings.consent), "recreated": None,
            }
            conn.execute(insert(erasures).values(**record))
            if self.sync is not None:
                self.sync.queue(conn, holdings.customer_id, [("customer.erased", {
                    "erasure_id": erasure_id, "merged_ids": ids[1:]})], now=now, erased=True)
            for identity in holdings.identities:
                digest = identity_hash(keys[0], identity)
                # an identity erased before (and recreated since) keeps its first record
                if conn.execute(select(erased_identities.c.hash)
                                .where(erased_identities.c.hash == digest)).first() is None:
                    conn.execute(insert(erased_identities).values(
                        hash=digest, kind=identity.kind, erasure_id=erasure_id, erased_at=now))
        return record

    def add_counts(self, erasure_id: str, counts: dict[str, int]) -> None:
        """Add what the other stores removed to the audit record."""
        with self.engine.begin() as conn:
            row = conn.execute(select(erasures.c.counts).where(erasures.c.id == erasure_id)).first()
            if row is not None:
                conn.execute(update(erasures).where(erasures.c.id == erasure_id)
                             .values(counts={**row.counts, **counts}))

    def erasure(self, customer_id: str) -> dict[str, Any] | None:
        """The audit record of ``customer_id``'s erasure (the id, or one merged into it)."""
        with self.engine.connect() as conn:
            rows = _rows(conn, select(erasures).where(erasures.c.customer_id == customer_id))
            if not rows:  # a profile merged into an erased one (rare): look through them
                rows = [r for r in _rows(conn, select(erasures).order_by(erasures.c.erased_at))
                        if customer_id in (r["merged_ids"] or [])]
        return _record(rows[0]) if rows else None

    def erased(self, identities: Iterable[Identity]) -> tuple[Identity, datetime] | None:
        """The first of ``identities`` that was erased and that no live profile holds now,
        with when it was erased; None when there is none."""
        keys = self._keys(create=False)
        if not keys:
            return None
        hashes = {identity_hash(k, i): i for i in identities for k in keys}
        if not hashes:
            return None
        with self.engine.connect() as conn:
            found = conn.execute(
                select(erased_identities.c.hash, erased_identities.c.erased_at)
                .where(erased_identities.c.hash.in_(list(hashes)))
            ).all()
            for digest, at in found:
                identity = canonical(hashes[digest])
                held = conn.execute(select(db.identities.c.id).where(
                    db.identities.c.kind == identity.kind,
                    db.identities.c.value == identity.value)).first()
                if held is None:
                    return identity, utc(at)
        return None

    def note_recreated(self, identities: Iterable[Identity]) -> None:
        """A person whose identity was erased wrote again and has a fresh profile: the
        erasure's audit record counts it, with when (still no personal data)."""
        keys = self._keys(create=False)
        hashes = [identity_hash(k, i) for i in identities for k in keys]
        if not hashes:
            return
        now = self.clock.now().isoformat()
        with self.engine.begin() as conn:
            for erasure_id in set(conn.execute(
                select(erased_identities.c.erasure_id)
                .where(erased_identities.c.hash.in_(hashes))).scalars()):
                row = conn.execute(select(erasures.c.recreated)
                                   .where(erasures.c.id == erasure_id)).first()
                if row is None:
                    continue
                before = row.recreated or {}
                conn.execute(update(erasures).where(erasures.c.id == erasure_id).values(
                    recreated={"times": int(before.get("times", 0)) + 1,
                               "first_at": before.get("first_at", now), "last_at": now,
                               "note": "recreated after erasure: the person wrote again"}))

    def _keys(self, *, create: bool = True) -> list[bytes]:
        """The hashing keys: the configured one first, then the generated one."""
        keys = [self.salt.encode()] if self.salt else []
        stored = self._stored_salt(create=create and not self.salt)
        if stored is not None:
            keys.append(stored)
        return keys

    def _stored_salt(self, *, create: bool) -> bytes | None:
        if self._stored is not None:
            return self._stored
        with self.engine.connect() as conn:
            salt = conn.execute(select(erasure_salt.c.salt).where(erasure_salt.c.id == 1)).scalar()
        if salt is None and create:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(erasure_salt).values(
                        id=1, salt=secrets.token_hex(32), created_at=self.clock.now()))
            except IntegrityError:
                pass  # another process made it first
            return self._stored_salt(create=False)
        if salt is not None:
            self._stored = salt.encode()
        return self._stored

    # --- making the deletion final on disk --------------------------------------------------

    def compact(self) -> None:
        """SQLite: rebuild the file (VACUUM) and checkpoint its write-ahead log, truncating
        it, so neither keeps a deleted page. PostgreSQL: nothing (the rows are gone; dead
        tuples are reclaimed by autovacuum)."""
        if not self._sqlite:
            return
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("PRAGMA secure_delete=ON")
            conn.exec_driver_sql("VACUUM")
            checkpoint_wal(conn.connection.dbapi_connection)  # type: ignore[arg-type]

    # --- access -----------------------------------------------------------------------------

    def export(self, ids: Sequence[str]) -> dict[str, Any]:
        """Everything the store holds about the person, as JSON-ready rows."""
        with self.engine.connect() as conn:
            profiles = {r["id"]: r for r in _rows(conn, select(db.customers)
                                                 .where(db.customers.c.id.in_(ids)))}
            convs = _rows(conn, select(db.conversations)
                          .where(db.conversations.c.customer_id.in_(ids))
                          .order_by(db.conversations.c.created_at))
            messages = _rows(conn, select(db.messages).where(db.messages.c.customer_id.in_(ids))
                             .order_by(db.messages.c.created_at, db.messages.c.id))
            handoffs = _rows(conn, select(db.handoffs).where(db.handoffs.c.customer_id.in_(ids))
                             .order_by(db.handoffs.c.created_at))
            h_events = _rows(conn, select(db.handoff_events).where(
                db.handoff_events.c.handoff_id.in_([h["id"] for h in handoffs]))
                .order_by(db.handoff_events.c.created_at, db.handoff_events.c.id))

            def of(table: Table, order: Any) -> list[dict[str, Any]]:
                return _rows(conn, select(table).where(table.c.customer_id.in_(ids))
                             .order_by(order))

            out: dict[str, Any] = {
                "customer_id": ids[0],
                "exported_at": self.clock.now(),
                "profile": profiles.get(ids[0]),
                "merged_profiles": [profiles[i] for i in ids[1:] if i in profiles],
                "identities": [{"kind": r["kind"], "value": r["value"]}
                               for r in of(db.identities, db.identities.c.id)],
                "consent_ledger": of(db.consent_events, db.consent_events.c.id),
                "conversations": [
                    {**c, "messages": [m for m in messages if m["conversation_id"] == c["id"]]}
                    for c in convs],
                "decisions": of(db.decisions, db.decisions.c.created_at),
                "approvals": of(db.approvals, db.approvals.c.created_at),
                "handoffs": [{**h, "events": [e for e in h_events if e["handoff_id"] == h["id"]]}
                             for h in handoffs],
                "outbox": of(db.outbox, db.outbox.c.created_at),
                "crm_activities": of(db.crm_activities, db.crm_activities.c.created_at),
                "events": of(db.events, db.events.c.occurred_at),
                "jobs": of(db.jobs, db.jobs.c.created_at),
                "merges": _rows(conn, select(db.profile_merges).where(
                    or_(db.profile_merges.c.survivor_id.in_(ids),
                        db.profile_merges.c.merged_id.in_(ids)))
                    .order_by(db.profile_merges.c.created_at)),
            }
        # the transcript lists a message under its conversation; a message whose conversation
        # is not the person's (none should be) is still exported
        listed = {m["id"] for c in out["conversations"] for m in c["messages"]}
        out["other_messages"] = [m for m in messages if m["id"] not in listed]
        return out

    # --- retention --------------------------------------------------------------------------

    def purge_before(self, cutoff: datetime) -> Purged:
        """Delete messages and behavioural events older than ``cutoff``, with the turns
        decided on those messages (decisions, their reasons and approvals, outbox rows).
        A message still waiting for its turn or its delivery is kept until it is done.
        CRM activities and handoffs stay, unlinked from a purged decision."""
        m, d, o = db.messages, db.decisions, db.outbox
        undelivered = exists().where(o.c.message_id == m.c.id,
                                     o.c.status.in_((*DUE_STATUSES, "sending")))
        counts: dict[str, int] = {}
        with self.engine.begin() as conn:
            if self._sqlite:
                conn.exec_driver_sql("PRAGMA secure_delete=ON")
            old = conn.execute(select(m.c.id).where(
                m.c.created_at < cutoff, or_(m.c.turn_status.is_(None),
                                             m.c.turn_status != "pending"),
                ~undelivered)).scalars().all()
            old_set = set(old)
            decisions = conn.execute(select(d.c.id, d.c.job_id, d.c.inbound_message_id).where(
                or_(d.c.inbound_message_id.in_(old), and_(d.c.created_at < cutoff,
                                                          d.c.inbound_message_id.is_(None))))
            ).all()
            dids = [r.id for r in decisions]
            # a decision's outbound message may be younger than the cutoff: it goes with its
            # outbox row only if it is old itself
            counts["outbox"] = conn.execute(delete(o).where(
                or_(o.c.decision_id.in_(dids), o.c.message_id.in_(old)),
                o.c.status.not_in((*DUE_STATUSES, "sending")))).rowcount
            # a decision with a message still to be delivered stays until it is sent
            waiting = set(conn.execute(select(o.c.decision_id).where(o.c.decision_id.in_(dids)))
                          .scalars())
            decisions = [r for r in decisions if r.id not in waiting]
            dids = [r.id for r in decisions]
            counts["approvals"] = conn.execute(
                delete(db.approvals).where(db.approvals.c.decision_id.in_(dids))).rowcount
            counts["decision_reasons"] = conn.execute(delete(db.decision_reasons).where(
                db.decision_reasons.c.decision_id.in_(dids))).rowcount
            for table in (db.crm_activities, db.handoffs):
                conn.execute(update(table).where(table.c.decision_id.in_(dids))
                             .values(decision_id=None))
            counts["decisions"] = conn.execute(delete(d).where(d.c.id.in_(dids))).rowcount
            referenced = set(conn.execute(select(d.c.inbound_message_id).where(
                d.c.inbound_message_id.in_(old))).scalars()) | set(conn.execute(
                    select(o.c.message_id).where(o.c.message_id.in_(old))).scalars())
            gone = [i for i in old if i not in referenced]
            counts["messages"] = conn.execute(delete(m).where(m.c.id.in_(gone))).rowcount
            counts["events"] = conn.execute(
                delete(db.events).where(db.events.c.occurred_at < cutoff)).rowcount
        threads = [f"turn:{i}" for i in gone if i in old_set] + [
            f"turn:{r.job_id}" for r in decisions if r.job_id]
        return Purged(counts=counts, message_ids=gone, thread_ids=threads)


def _withdrawn(consent: dict[str, Any]) -> list[dict[str, str]]:
    """The consent the erasure withdraws, per channel and purpose (no personal data)."""
    out = []
    for channel, purposes in sorted(consent.items()):
        if not isinstance(purposes, dict):
            continue
        for purpose, status in sorted(purposes.items()):
            if isinstance(status, str) and status != "unknown":
                out.append({"channel": channel, "purpose": purpose, "previous": status,
                            "status": "revoked", "source": "erasure"})
    return out


def _record(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "erased_at": utc(row["erased_at"])}
