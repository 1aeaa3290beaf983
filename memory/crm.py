"""The CRM side of a profile: stage, attributes and consent changes, and the activity log.

:func:`apply_crm` is the one writer of a profile change; it takes the caller's ``Connection``
so a turn, an approval and a signal change the profile inside their own transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from core.clock import Clock, utc
from core.domain import Channel, ConsentStatus
from core.effects import Activity, CrmChange
from memory import db
from memory.sync import Change, SyncOut, activity_changes

_CONSENT_RANK = {"revoked": 2, "granted": 1, "unknown": 0}


def consent_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):  # a bare status: the channel as a whole
        return {"service": value, "marketing": "revoked" if value == "revoked" else "unknown"}
    return dict(value)


def merge_consent(
    stored: dict[str, Any], change: dict[Channel, dict[str, ConsentStatus]]
) -> dict[str, Any]:
    merged = {k: consent_dict(v) for k, v in stored.items()}
    for channel, purposes in change.items():
        merged[channel] = {**merged.get(channel, {}), **purposes}
    return merged


def strictest_consent(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two profiles' consent as one: a revocation on either side stands, then a grant."""
    out: dict[str, Any] = {}
    for channel in {*a, *b}:
        left, right = consent_dict(a.get(channel, {})), consent_dict(b.get(channel, {}))
        out[channel] = {
            purpose: max(left.get(purpose, "unknown"), right.get(purpose, "unknown"),
                         key=lambda s: _CONSENT_RANK.get(s, 0))
            for purpose in {*left, *right}
        }
    return out


def apply_crm(
    conn: Connection, customer_id: str, change: CrmChange, *, now: datetime
) -> list[Change]:
    """Apply ``change`` to the profile in the caller's transaction (``now``: its updated_at);
    returns what really changed (for the CRM sync out, :mod:`memory.sync`)."""
    # the row is locked (PostgreSQL) so concurrent turns and approvals cannot lose updates;
    # SQLite already serialises writers and the turn has written before it gets here
    row = conn.execute(
        select(db.customers.c.attributes, db.customers.c.consent,
               db.customers.c.lifecycle_stage)
        .where(db.customers.c.id == customer_id)
        # FOR NO KEY UPDATE: a message or decision inserted meanwhile (its foreign key takes
        # KEY SHARE) is not blocked, so a turn and a new message cannot deadlock
        .with_for_update(key_share=True)
    ).first()
    if row is None:
        raise KeyError(customer_id)
    values: dict[str, Any] = {"updated_at": now}
    changed: list[Change] = []
    if change.stage:
        values["lifecycle_stage"] = change.stage
        if change.stage != row.lifecycle_stage:
            changed.append(("stage.changed", {"from": row.lifecycle_stage, "to": change.stage}))
    if change.fields or change.increments:
        before = row.attributes or {}
        attributes = {**before, **change.fields}
        for name, delta in change.increments.items():
            attributes[name] = round(float(attributes.get(name) or 0) + delta, 2)
        values["attributes"] = attributes
        diff = {k: v for k, v in attributes.items() if k not in before or before[k] != v}
        if diff:
            changed.append(("profile.updated", {"attributes": diff}))
    if change.consent:
        values["consent"] = merge_consent(row.consent or {}, change.consent)
        rows = consent_rows(customer_id, row.consent or {}, values["consent"], change, now=now)
        if rows:
            conn.execute(insert(db.consent_events), rows)
            changed.append(("consent.changed", {"changes": [
                {k: r[k] for k in ("channel", "purpose", "previous", "status", "source")}
                | {"at": utc(r["at"]).isoformat()} for r in rows]}))
    conn.execute(update(db.customers).where(db.customers.c.id == customer_id).values(**values))
    return changed


def record_consent(
    conn: Connection, customer_id: str, before: dict[str, Any], after: dict[str, Any],
    change: CrmChange, *, now: datetime,
) -> None:
    """One ledger row per (channel, purpose) whose status changed, in the caller's
    transaction; a change to the status it already had records nothing."""
    rows = consent_rows(customer_id, before, after, change, now=now)
    if rows:
        conn.execute(insert(db.consent_events), rows)


def consent_rows(
    customer_id: str, before: dict[str, Any], after: dict[str, Any], change: CrmChange, *,
    now: datetime,
) -> list[dict[str, Any]]:
    """The ledger rows :func:`record_consent` writes for ``before`` → ``after``."""
    rows = []
    for channel, purposes in after.items():
        old = consent_dict(before.get(channel, {}))
        for purpose, status in consent_dict(purposes).items():
            previous = old.get(purpose, "unknown")
            if status != previous:
                rows.append({
                    "customer_id": customer_id, "channel": channel, "purpose": purpose,
                    "previous": previous, "status": status, "source": change.consent_source,
                    "by": change.consent_by, "evidence": change.consent_evidence,
                    "at": change.consent_at or now, "created_at": now,
                })
    return rows


def consent_ledger(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    """Every consent change of the customer, oldest first."""
    e = db.consent_events
    rows = conn.execute(
        select(e.c.channel, e.c.purpose, e.c.previous, e.c.status, e.c.source, e.c.by,
               e.c.evidence, e.c.at, e.c.created_at)
        .where(e.c.customer_id == customer_id).order_by(e.c.id)
    ).all()
    return [dict(r._mapping) | {"at": utc(r.at), "created_at": utc(r.created_at)} for r in rows]


def add_activities(
    conn: Connection,
    customer_id: str,
    decision_id: str | None,
    activities: Sequence[Activity],
    *,
    done: bool,
    now: datetime,
) -> None:
    """Log ``activities`` on the profile in the caller's transaction."""
    for act in activities:
        conn.execute(insert(db.crm_activities).values(
            id=act.id, customer_id=customer_id, decision_id=decision_id, kind=act.kind,
            body=act.body, done=done, created_at=now,
        ))


def _own_fields(conn: Connection, customer_id: str, given: dict[str, Any]) -> list[Change]:
    """Set the profile's own fields that are given (not None); what changed, for the sync."""
    own = {k: v for k, v in given.items() if v is not None}
    if not own:
        return []
    c = db.customers.c
    row = conn.execute(select(*(getattr(c, k) for k in own)).where(c.id == customer_id)).one()
    conn.execute(update(db.customers).where(c.id == customer_id).values(**own))
    diff = {k: v for k, v in own.items() if getattr(row, k) != v}
    return [("profile.updated", diff)] if diff else []


class CrmRepository:
    """Profile changes outside a turn (the API, signals) and the activity log."""

    def __init__(self, engine: Engine, clock: Clock, sync: SyncOut) -> None:
        self.engine = engine
        self.clock = clock
        self.sync = sync

    def update_customer(
        self,
        customer_id: str,
        *,
        stage: str | None = None,
        attributes: dict[str, Any] | None = None,
        consent: dict[Channel, Any] | None = None,
        name: str | None = None,
    ) -> None:
        now = self.clock.now()
        with self.engine.begin() as conn:
            changed = apply_crm(conn, customer_id, CrmChange(
                stage=stage, fields=attributes or {},
                consent={k: consent_dict(v) for k, v in (consent or {}).items()},
            ), now=now)
            if name is not None:
                changed += _own_fields(conn, customer_id, {"name": name})
            self.sync.queue(conn, customer_id, changed, now=now)

    def update_profile(
        self, customer_id: str, changes: Sequence[CrmChange], *, name: str | None = None,
        timezone: str | None = None, locale: str | None = None,
        channel_preference: str | None = None,
    ) -> None:
        """The profile API's update: the CRM changes (stage, attributes, consent with its
        source, recorded in the ledger) and the profile's own fields, in one transaction."""
        now = self.clock.now()
        with self.engine.begin() as conn:
            changed = [c for change in changes
                       for c in apply_crm(conn, customer_id, change, now=now)]
            changed += _own_fields(conn, customer_id, {
                "name": name, "timezone": timezone, "locale": locale,
                "channel_preference": channel_preference})
            self.sync.queue(conn, customer_id, changed, now=now)

    def consent_ledger(self, customer_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return consent_ledger(conn, customer_id)

    def apply_profile_change(
        self, customer_id: str, change: CrmChange, activities: Sequence[Activity] = ()
    ) -> None:
        """A signal's effect on the profile (traits, intent scores, a stage rule), recorded."""
        now = self.clock.now()
        with self.engine.begin() as conn:
            changed = apply_crm(conn, customer_id, change, now=now)
            add_activities(conn, customer_id, None, activities, done=True, now=now)
            self.sync.queue(conn, customer_id, changed + activity_changes(activities, None),
                            now=now)

    def crm_activities(self, customer_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.crm_activities)
                .where(db.crm_activities.c.customer_id == customer_id)
                .order_by(db.crm_activities.c.created_at, db.crm_activities.c.id)
            ).all()
            return [dict(r._mapping) for r in rows]
