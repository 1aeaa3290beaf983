"""Profiles in bulk: an import's rows applied set-based, one batch per transaction, and the
live profiles read back page by page for an export.

:meth:`BulkProfiles.apply` gives each row of a batch the meaning ``CustomerService.upsert``
gives one request (the profile any identity names, created when none does; new identities
linked; the stage only forward unless forced; attributes merged key by key; own fields set when
given; each consent change in the ledger with its source, who and when), with a few statements
per batch instead of a dozen per row: the identities are resolved in one query, the profiles
read in one, and the new profiles, identities, changed profiles and ledger rows written with
one ``executemany`` each. A row that changes nothing writes nothing (not even ``updated_at``),
so running an import twice changes nothing the second time. When the CRM sync out is on, each
row's changes are queued (``memory.sync``) as the profile API's request would queue them.

A row whose identities belong to two or more profiles needs a merge (rare, and with side
effects on every table a customer owns): the batch is committed up to that row and reported
as stopped there, so the caller runs that row through the per-row path
(``Profiles.merge_customers`` and its hooks) and hands the rest back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from core.clock import Clock, IdFactory, utc
from core.domain import CustomerProfile, Identity
from core.effects import CrmChange
from memory import db
from memory.crm import consent_dict, consent_rows, merge_consent
from memory.sync import Change, SyncOut

#: Values per ``IN (...)`` list: well under SQLite's and PostgreSQL's bind-parameter limits.
_IN_CHUNK = 5000
#: Attempts at a batch a concurrent writer raced (an identity linked meanwhile).
_ATTEMPTS = 3

Status = Literal["created", "updated", "unchanged", "refused"]


@dataclass(frozen=True)
class BulkRow:
    """One validated row, as the profile API's service would apply it."""

    #: canonical, at most one per kind, in the order the request lists them
    identities: list[Identity]
    #: the stage and attributes first, then one change per consent source (the ledger's rows)
    changes: list[CrmChange]
    name: str | None = None
    timezone: str | None = None
    locale: str | None = None
    channel_preference: str | None = None
    force: bool = False

    @property
    def stage(self) -> str | None:
        return next((c.stage for c in self.changes if c.stage), None)


@dataclass(frozen=True)
class RowOutcome:
    status: Status
    customer_id: str | None = None
    #: why a row was refused: the field and the message
    field: str | None = None
    message: str | None = None


@dataclass
class BatchResult:
    #: one per row applied, in order: ``rows[:len(outcomes)]``
    outcomes: list[RowOutcome]
    #: the row after them needs a merge: run it through the per-row path, then the rest
    stopped_for_merge: bool = False


@dataclass
class ExportedProfile:
    profile: CustomerProfile
    #: (channel, purpose) → the source, at and evidence of the ledger row that set it
    consent_sources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


@dataclass
class _State:
    id: str
    name: str | None
    stage: str
    timezone: str
    locale: str
    channel_preference: str | None
    attributes: dict[str, Any]
    consent: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    new: bool = False
    #: an identity was linked to it in this batch
    linked: bool = False
    #: its values as read, before the batch
    loaded: tuple[Any, ...] = ()

    def values(self) -> tuple[Any, ...]:
        return (self.name, self.stage, self.timezone, self.locale, self.channel_preference,
                self.attributes, self.consent)

    @property
    def dirty(self) -> bool:
        """Changed by the batch (rows that undo each other's change leave it clean)."""
        return not self.new and (self.linked or self.values() != self.loaded)


def _chunks(values: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


class BulkProfiles:
    def __init__(self, engine: Engine, clock: Clock, ids: IdFactory,
                 sync: SyncOut | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.ids = ids
        #: the CRM sync out: each row's changes queued as the profile API's would be
        self.sync = sync

    # --- import ---------------------------------------------------------------------------

    def apply(
        self, rows: Sequence[BulkRow], *, stages: Sequence[str], default_stage: str
    ) -> BatchResult:
        """Apply ``rows`` in order in one transaction (see the module's docstring)."""
        for attempt in range(_ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    return self._apply(conn, rows, list(stages), default_stage)
            except IntegrityError:
                # a concurrent writer linked one of these identities first: read again
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _apply(
        self, conn: Connection, rows: Sequence[BulkRow], stages: list[str], default_stage: str
    ) -> BatchResult:
        owner = self._owners(conn, [i for row in rows for i in row.identities])
        states = self._states(conn, set(owner.values()))
        outcomes: list[RowOutcome] = []
        new_identities: list[dict[str, Any]] = []
        ledger: list[dict[str, Any]] = []
        synced: list[tuple[str, list[Change], datetime]] = []
        stopped = False
        for row in rows:
            keys = [(i.kind, i.value) for i in row.identities]
            owners = list(dict.fromkeys(owner[k] for k in keys if k in owner))
            if len(owners) > 1:
                stopped = True
                break
            now = self.clock.now()
            stage = row.stage
            created = not owners
            if owners:
                state = states[owners[0]]
                if (stage is not None and not row.force and state.stage in stages
                        and stages.index(stage) < stages.index(state.stage)):
                    outcomes.append(RowOutcome(
                        "refused", state.id, "lifecycle_stage",
                        f"{stage!r} is before the customer's stage {state.stage!r}; "
                        "set force to move it back"))
                    continue
            else:
                state = _State(
                    id=self.ids("cus"), name=None, stage=stage or default_stage,
                    timezone=row.timezone or "", locale="", channel_preference=None,
                    attributes={}, consent={}, created_at=now, updated_at=now, new=True)
                states[state.id] = state
            linked = [k for k in keys if k not in owner]
            state.linked = state.linked or bool(linked)
            for kind, value in linked:
                owner[(kind, value)] = state.id
                new_identities.append({"customer_id": state.id, "kind": kind, "value": value})
            before = state.values()
            written, changes = self._change(state, row, now)
            ledger += written
            if created:
                synced.append((state.id, [("profile.updated", {"created": True})], now))
            if changes:
                synced.append((state.id, changes, now))
            status: Status = "unchanged"
            if created:
                status = "created"
            elif linked or state.values() != before:
                status = "updated"
                state.updated_at = now
            outcomes.append(RowOutcome(status, state.id))
        self._write(conn, states.values(), new_identities, ledger)
        if self.sync is not None and self.sync.enabled:
            for customer_id, changes, at in synced:
                self.sync.queue(conn, customer_id, changes, now=at)
        return BatchResult(outcomes, stopped)

    @staticmethod
    def _change(
        state: _State, row: BulkRow, now: datetime
    ) -> tuple[list[dict[str, Any]], list[Change]]:
        """``apply_crm`` for each change, then the profile's own fields, on ``state``: the
        ledger rows, and what changed for the CRM sync out (as ``memory.crm`` reports it)."""
        ledger: list[dict[str, Any]] = []
        changed: list[Change] = []
        for change in row.changes:
            if change.stage:
                if change.stage != state.stage:
                    changed.append(("stage.changed", {"from": state.stage, "to": change.stage}))
                state.stage = change.stage
            if change.fields or change.increments:
                before = state.attributes
                attributes = {**before, **change.fields}
                for name, delta in change.increments.items():
                    attributes[name] = round(float(attributes.get(name) or 0) + delta, 2)
                state.attributes = attributes
                diff = {k: v for k, v in attributes.items() if k not in before or before[k] != v}
                if diff:
                    changed.append(("profile.updated", {"attributes": diff}))
            if change.consent:
                after = merge_consent(state.consent, change.consent)
                rows = consent_rows(state.id, state.consent, after, change, now=now)
                state.consent = after
                if rows:
                    ledger += rows
                    changed.append(("consent.changed", {"changes": [
                        {k: r[k] for k in ("channel", "purpose", "previous", "status", "source")}
                        | {"at": utc(r["at"]).isoformat()} for r in rows]}))
        own = {}
        for name in ("name", "timezone", "locale", "channel_preference"):
            value = getattr(row, name)
            if value is not None:
                if getattr(state, name) != value:
                    own[name] = value
                setattr(state, name, value)
        if own:
            changed.append(("profile.updated", own))
        return ledger, changed

    def _owners(self, conn: Connection, identities: Iterable[Identity]) -> dict[
            tuple[str, str], str]:
        """(kind, value) → the live profile holding it, for those held."""
        wanted = {(i.kind, i.value) for i in identities}
        held: dict[tuple[str, str], str] = {}
        t = db.identities
        values = sorted({value for _, value in wanted})
        for chunk in _chunks(values):
            for kind, value, cid in conn.execute(
                select(t.c.kind, t.c.value, t.c.customer_id).where(t.c.value.in_(chunk))
            ).all():
                if (kind, value) in wanted:
                    held[(kind, value)] = cid
        live = self._live_ids(conn, set(held.values()))
        return {k: live[cid] for k, cid in held.items() if cid in live}

    @staticmethod
    def _live_ids(conn: Connection, ids: set[str]) -> dict[str, str]:
        """Each of ``ids`` → the profile it is now (itself, or the one it was merged into)."""
        c = db.customers
        into: dict[str, str | None] = {}
        todo = set(ids)
        while todo:
            for chunk in _chunks(sorted(todo)):
                for cid, merged_into in conn.execute(
                    select(c.c.id, c.c.merged_into).where(c.c.id.in_(chunk))
                ).all():
                    into[cid] = merged_into
            todo = {m for cid in todo if (m := into.get(cid)) and m not in into}
        live: dict[str, str] = {}
        for cid in ids:
            seen, current = set(), cid
            while current in into and into[current] and current not in seen:
                seen.add(current)
                current = into[current]  # type: ignore[assignment]
            if current in into:
                live[cid] = current
        return live

    @staticmethod
    def _states(conn: Connection, ids: set[str]) -> dict[str, _State]:
        c = db.customers
        states: dict[str, _State] = {}
        for chunk in _chunks(sorted(ids)):
            for r in conn.execute(
                select(c.c.id, c.c.name, c.c.lifecycle_stage, c.c.timezone, c.c.locale,
                       c.c.channel_preference, c.c.attributes, c.c.consent, c.c.created_at,
                       c.c.updated_at)
                # FOR NO KEY UPDATE, as in memory.crm.apply_crm
                .where(c.c.id.in_(chunk)).order_by(c.c.id).with_for_update(key_share=True)
            ).all():
                states[r.id] = _State(
                    id=r.id, name=r.name, stage=r.lifecycle_stage, timezone=r.timezone,
                    locale=r.locale or "", channel_preference=r.channel_preference,
                    attributes=dict(r.attributes or {}),
                    consent={k: consent_dict(v) for k, v in (r.consent or {}).items()},
                    created_at=r.created_at, updated_at=r.updated_at)
                states[r.id].loaded = states[r.id].values()
        return states

    @staticmethod
    def _write(
        conn: Connection, states: Iterable[_State], identities: list[dict[str, Any]],
        ledger: list[dict[str, Any]],
    ) -> None:
        c = db.customers
        new = [s for s in states if s.new]
        dirty = [s for s in states if s.dirty]
        if new:
            conn.execute(insert(c), [{
                "id": s.id, "name": s.name, "lifecycle_stage": s.stage, "timezone": s.timezone,
                "locale": s.locale, "channel_preference": s.channel_preference,
                "attributes": s.attributes, "consent": s.consent, "created_at": s.created_at,
                "updated_at": s.updated_at,
            } for s in new])
        if identities:
            conn.execute(insert(db.identities), identities)
        if dirty:
            conn.execute(
                update(c).where(c.c.id == bindparam("b_id")).values(
                    name=bindparam("b_name"), lifecycle_stage=bindparam("b_stage"),
                    timezone=bindparam("b_timezone"), locale=bindparam("b_locale"),
                    channel_preference=bindparam("b_channel_preference"),
                    attributes=bindparam("b_attributes"), consent=bindparam("b_consent"),
                    updated_at=bindparam("b_updated_at")),
                [{"b_id": s.id, "b_name": s.name, "b_stage": s.stage,
                  "b_timezone": s.timezone, "b_locale": s.locale,
                  "b_channel_preference": s.channel_preference,
                  "b_attributes": s.attributes, "b_consent": s.consent,
                  "b_updated_at": s.updated_at} for s in dirty])
        if ledger:
            conn.execute(insert(db.consent_events), ledger)

    def ledger_size(self) -> int:
        """Rows in the consent ledger (an import reports how many it added)."""
        with self.engine.connect() as conn:
            return int(conn.execute(
                select(func.count()).select_from(db.consent_events)).scalar_one())

    # --- export ---------------------------------------------------------------------------

    def count_live(self) -> int:
        """Profiles not merged into another."""
        c = db.customers
        with self.engine.connect() as conn:
            return int(conn.execute(
                select(func.count()).select_from(c).where(c.c.merged_into.is_(None))
            ).scalar_one())

    def _live_pages(self, columns: Sequence[Any], page: int) -> Iterator[Sequence[Any]]:
        """The live profiles' ``columns`` (the first is the id), ``page`` rows at a time, in
        id order (keyset pages: no cursor held open between pages)."""
        c = db.customers
        last: str | None = None
        while True:
            query = select(*columns).where(c.c.merged_into.is_(None)).order_by(c.c.id) \
                .limit(page)
            if last is not None:
                query = query.where(c.c.id > last)
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            last = rows[-1][0]
            yield rows

    def export_shape(self, page: int = 5000) -> tuple[set[str], set[tuple[str, str]]]:
        """The attribute names and the (channel, purpose) pairs with a consent status that
        the live profiles use: the columns of a CSV export."""
        c = db.customers
        names: set[str] = set()
        pairs: set[tuple[str, str]] = set()
        for rows in self._live_pages((c.c.id, c.c.attributes, c.c.consent), page):
            for _, attributes, consent in rows:
                names.update(attributes or {})
                for channel, purposes in (consent or {}).items():
                    pairs.update((channel, purpose)
                                 for purpose, status in consent_dict(purposes).items()
                                 if status in ("granted", "revoked"))
        return names, pairs

    def export_pages(self, page: int = 1000) -> Iterator[list[ExportedProfile]]:
        """Every live profile with its identities and where its consent came from, a page at
        a time."""
        c, i, e = db.customers, db.identities, db.consent_events
        for rows in self._live_pages((c,), page):
            ids = [r.id for r in rows]
            with self.engine.connect() as conn:
                held: dict[str, list[Identity]] = {}
                for cid, kind, value in conn.execute(
                    select(i.c.customer_id, i.c.kind, i.c.value)
                    .where(i.c.customer_id.in_(ids)).order_by(i.c.id)
                ).all():
                    held.setdefault(cid, []).append(Identity(kind=kind, value=value))
                sources: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
                for r in conn.execute(
                    select(e.c.customer_id, e.c.channel, e.c.purpose, e.c.status, e.c.source,
                           e.c.at, e.c.evidence)
                    .where(e.c.customer_id.in_(ids)).order_by(e.c.id)
                ).all():
                    sources.setdefault(r.customer_id, {})[(r.channel, r.purpose)] = {
                        "status": r.status, "source": r.source, "at": utc(r.at),
                        "evidence": r.evidence}
            yield [ExportedProfile(
                profile=CustomerProfile(
                    id=r.id, name=r.name, identities=held.get(r.id, []),
                    attributes=r.attributes or {}, lifecycle_stage=r.lifecycle_stage,
                    consent=r.consent or {}, timezone=r.timezone, locale=r.locale or "",
                    channel_preference=r.channel_preference, created_at=utc(r.created_at),
                    updated_at=utc(r.updated_at)),
                consent_sources=sources.get(r.id, {}),
            ) for r in rows]
