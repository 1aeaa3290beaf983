"""Events in bulk: the set-based SQL of one ingested batch (``journey.signals``), in one
transaction.

:class:`EventBatch` is bound to the batch's connection (``Store.event_batch``). It reads what
the batch needs in a few queries (who holds the identities, the profiles, their recent events,
when each journey last fired, their pending tagged jobs, which event ids are stored already)
and writes what the batch decided with one ``executemany`` per table. The decisions themselves
(scores, stages, journeys) are the service's, event by event, in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import DBAPIError

from core.clock import IdFactory, utc
from core.domain import Event
from memory import db
from memory.sync import Change, SyncOut

#: the most events per customer a batch reads back (as ``Profiles.recent_events`` did)
RECENT_LIMIT = 500


class BatchConflict(Exception):
    """The batch's transaction failed on the database (a concurrent writer took an event id
    or an identity first, or SQLite was busy): nothing of it was written."""


@contextmanager
def batch_transaction(engine: Engine, ids: IdFactory, sync: SyncOut) -> Iterator[EventBatch]:
    """An :class:`EventBatch` in one transaction, committed when the block ends; a database
    error rolls it all back and is raised as :class:`BatchConflict`."""
    try:
        with engine.begin() as conn:
            yield EventBatch(conn, ids, sync)
    except DBAPIError as exc:
        raise BatchConflict(str(exc.orig or exc)) from exc


@dataclass
class BatchProfile:
    """A profile as the batch sees and changes it (written once at the end)."""

    id: str
    name: str | None
    lifecycle_stage: str
    attributes: dict[str, Any]
    created: bool = False
    changed: bool = False


@dataclass
class PendingJob:
    id: str
    tag: str | None
    journey: str | None
    #: written by this batch (not stored yet)
    new: bool = False


@dataclass
class BatchWrites:
    customers: list[BatchProfile] = field(default_factory=list)
    identities: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    activities: list[dict[str, Any]] = field(default_factory=list)
    #: stored pending jobs cancelled: (id, reason)
    cancelled: list[tuple[str, str]] = field(default_factory=list)

    def stamp_back(self, by: dict[str, timedelta]) -> None:
        """Move each customer's activities and CRM sync jobs back by ``by[customer]`` (a
        batch stamps a customer's changes a microsecond apart, in the order they were
        decided, then moves them back so the last one is the batch's time)."""
        for row in self.activities:
            row["created_at"] -= by[row["customer_id"]]
        for row in self.jobs:
            if row["kind"] == "sync":
                back = by[row["customer_id"]]
                for key in ("created_at", "updated_at", "due_at"):
                    row[key] -= back
                row["payload"]["occurred_at"] = row["due_at"].isoformat()


class EventBatch:
    """One batch's reads and writes, in the caller's transaction."""

    def __init__(self, conn: Connection, ids: IdFactory, sync: SyncOut) -> None:
        self.conn = conn
        self.ids = ids
        self.sync = sync
        self._pg = conn.dialect.name == "postgresql"

    # --- reads ----------------------------------------------------------------------------

    def owners(self, identities: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The live profile holding each identity that is held (merges followed)."""
        by_kind: dict[str, set[str]] = {}
        for kind, value in identities:
            by_kind.setdefault(kind, set()).add(value)
        if not by_kind:
            return {}
        i = db.identities
        rows = self.conn.execute(select(i.c.kind, i.c.value, i.c.customer_id).where(or_(*(
            and_(i.c.kind == kind, i.c.value.in_(sorted(values)))
            for kind, values in by_kind.items())))).all()
        held = {(r.kind, r.value): r.customer_id for r in rows}
        live = self.live_ids(set(held.values()))
        return {key: live[cid] for key, cid in held.items() if cid in live}

    def live_ids(self, customer_ids: set[str]) -> dict[str, str]:
        """Each id → the profile it is now (following ``merged_into``); unknown ids left out."""
        c = db.customers
        out: dict[str, str] = {}
        todo = {cid: cid for cid in customer_ids}  # asked → current hop
        for _ in range(20):
            if not todo:
                break
            rows = {r.id: r.merged_into for r in self.conn.execute(
                select(c.c.id, c.c.merged_into).where(c.c.id.in_(sorted(set(todo.values())))))}
            nxt = {}
            for asked, hop in todo.items():
                if hop not in rows:
                    continue
                if rows[hop]:
                    nxt[asked] = rows[hop]
                else:
                    out[asked] = hop
            todo = nxt
        return out

    def profiles(self, customer_ids: Sequence[str]) -> dict[str, BatchProfile]:
        """The profiles, their rows locked for this transaction (PostgreSQL)."""
        if not customer_ids:
            return {}
        c = db.customers
        query = (select(c.c.id, c.c.name, c.c.lifecycle_stage, c.c.attributes)
                 .where(c.c.id.in_(sorted(customer_ids))).order_by(c.c.id))
        if self._pg:  # FOR NO KEY UPDATE, as in memory.crm.apply_crm
            query = query.with_for_update(key_share=True)
        return {r.id: BatchProfile(id=r.id, name=r.name, lifecycle_stage=r.lifecycle_stage,
                                   attributes=dict(r.attributes or {}))
                for r in self.conn.execute(query)}

    def recent_events(self, customer_ids: Sequence[str], since: datetime, *,
                      needed: dict[str, datetime] | None = None,
                      adding: dict[str, int] | None = None) -> dict[str, list[Event]]:
        """Each customer's events since ``since``, newest first, at most ``RECENT_LIMIT``.

        ``needed`` (event type → since when), with ``adding`` (how many events the batch
        adds per customer): for a customer whose events since ``since`` and the batch's stay
        within ``RECENT_LIMIT`` (so the limit cannot cut), only the events of those types and
        times are read — the only ones a rule or trigger can count."""
        out: dict[str, list[Event]] = {cid: [] for cid in customer_ids}
        if not customer_ids:
            return out
        e = db.events
        full = list(customer_ids)
        if needed is not None:
            counts: dict[str, int] = dict(self.conn.execute(
                select(e.c.customer_id, func.count())
                .where(e.c.customer_id.in_(sorted(customer_ids)), e.c.occurred_at >= since)
                .group_by(e.c.customer_id)).all())
            few = sorted(cid for cid in customer_ids if counts.get(cid, 0)
                         + (adding or {}).get(cid, 0) <= RECENT_LIMIT)
            full = sorted(set(customer_ids) - set(few))
            if few and needed:
                rows = self.conn.execute(
                    select(e.c.id, e.c.customer_id, e.c.type, e.c.properties, e.c.occurred_at)
                    .where(e.c.customer_id.in_(few), or_(*(
                        and_(e.c.type == kind, e.c.occurred_at >= max(at, since))
                        for kind, at in sorted(needed.items()))))
                    .order_by(e.c.customer_id, e.c.occurred_at.desc()))
                self._add(out, rows)
            if not full:
                return out
        ranked = select(
            e.c.id, e.c.customer_id, e.c.type, e.c.properties, e.c.occurred_at,
            func.row_number().over(partition_by=e.c.customer_id,
                                   order_by=e.c.occurred_at.desc()).label("n"),
        ).where(e.c.customer_id.in_(sorted(full)), e.c.occurred_at >= since).subquery()
        self._add(out, self.conn.execute(
            select(ranked.c.id, ranked.c.customer_id, ranked.c.type, ranked.c.properties,
                   ranked.c.occurred_at).where(ranked.c.n <= RECENT_LIMIT)
            .order_by(ranked.c.customer_id, ranked.c.occurred_at.desc())))
        return out

    @staticmethod
    def _add(out: dict[str, list[Event]], rows: Iterable[Any]) -> None:
        for r in rows:
            out[r.customer_id].append(Event.model_construct(
                id=r.id, customer_id=r.customer_id, type=r.type, properties=r.properties or {},
                occurred_at=utc(r.occurred_at)))

    def last_fired(self, customer_ids: Sequence[str],
                   journeys: Sequence[str]) -> dict[tuple[str, str], datetime]:
        """When each journey last fired for each customer (its newest journey job)."""
        if not customer_ids or not journeys:
            return {}
        j = db.jobs
        rows = self.conn.execute(
            select(j.c.customer_id, j.c.journey, func.max(j.c.created_at))
            .where(j.c.customer_id.in_(sorted(customer_ids)), j.c.kind == "journey",
                   j.c.journey.in_(sorted(journeys)))
            .group_by(j.c.customer_id, j.c.journey)).all()
        return {(cid, name): utc(at) for cid, name, at in rows if at is not None}

    def pending_tagged(self, customer_ids: Sequence[str], tags: Sequence[str],
                       journeys: Sequence[str]) -> dict[str, list[PendingJob]]:
        """Each customer's pending jobs with one of ``tags`` or ``journeys`` (cancellable)."""
        out: dict[str, list[PendingJob]] = {cid: [] for cid in customer_ids}
        conds = [c for c in (db.jobs.c.tag.in_(sorted(tags)) if tags else None,
                             db.jobs.c.journey.in_(sorted(journeys)) if journeys else None)
                 if c is not None]
        if not customer_ids or not conds:
            return out
        j = db.jobs
        for r in self.conn.execute(
                select(j.c.id, j.c.customer_id, j.c.tag, j.c.journey)
                .where(j.c.customer_id.in_(sorted(customer_ids)), j.c.status == "pending",
                       or_(*conds)).order_by(j.c.created_at, j.c.id)):
            out[r.customer_id].append(PendingJob(id=r.id, tag=r.tag, journey=r.journey))
        return out

    def stored_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        e = db.events
        return set(self.conn.execute(
            select(e.c.id).where(e.c.id.in_(sorted(set(event_ids))))).scalars())

    def stored_dedupe_keys(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        j = db.jobs
        return set(self.conn.execute(
            select(j.c.dedupe_key).where(j.c.dedupe_key.in_(sorted(set(keys))))).scalars())

    # --- writes ---------------------------------------------------------------------------

    def sync_rows(self, customer_id: str, changes: Sequence[Change], *,
                  now: Callable[[], datetime]) -> list[dict[str, Any]]:
        """The ``sync`` job rows :meth:`SyncOut.queue` would write for ``changes``; ``now``
        gives each its time (the batch's, a microsecond apart, so the CRM gets them in the
        order they happened, as when each event had its own transaction)."""
        return self.sync.rows(customer_id, changes, now=now)

    def write(self, w: BatchWrites, *, now: datetime, timezone: str = "") -> None:
        """Everything the batch decided, one statement per table (and kind of change)."""
        conn = self.conn
        new = [p for p in w.customers if p.created]
        if new:
            conn.execute(insert(db.customers), [dict(
                id=p.id, name=p.name, lifecycle_stage=p.lifecycle_stage, timezone=timezone,
                attributes=p.attributes, consent={}, created_at=now, updated_at=now,
            ) for p in new])
        if w.identities:
            conn.execute(insert(db.identities), w.identities)
        changed = [p for p in w.customers if p.changed and not p.created]
        if changed:
            c = db.customers
            conn.execute(
                update(c).where(c.c.id == bindparam("cid")).values(
                    name=bindparam("v_name"), lifecycle_stage=bindparam("v_stage"),
                    attributes=bindparam("v_attributes", type_=c.c.attributes.type),
                    updated_at=bindparam("v_updated")),
                [{"cid": p.id, "v_name": p.name, "v_stage": p.lifecycle_stage,
                  "v_attributes": p.attributes, "v_updated": now} for p in changed])
        if w.events:
            conn.execute(insert(db.events), w.events)
        if w.activities:
            conn.execute(insert(db.crm_activities), w.activities)
        if w.cancelled:
            j = db.jobs
            conn.execute(
                update(j).where(j.c.id == bindparam("jid"), j.c.status == "pending")
                .values(status="cancelled", error=bindparam("v_error"), updated_at=now),
                [{"jid": jid, "v_error": reason[:2000]} for jid, reason in w.cancelled])
        if w.jobs:
            conn.execute(insert(db.jobs), w.jobs)
