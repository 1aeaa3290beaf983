"""Who the customer is: profiles, their identities, merging two profiles into one, events.

A profile is found by any of its identities; identities seen together join their profiles
(:meth:`Profiles.resolve_customer`), and a merged profile keeps resolving to its survivor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from core.clock import Clock, IdFactory, utc
from core.domain import Channel, CustomerProfile, Event, Identity
from core.effects import CrmChange
from core.identity import InvalidIdentity, normal_identity
from memory import db
from memory.crm import consent_dict, record_consent, strictest_consent
from memory.handoffs import OPEN_HANDOFF
from memory.sync import SyncOut


def canonical_all(identities: Sequence[Identity]) -> list[Identity]:
    """Each identity in its canonical form, a repeated one once, in their order."""
    seen: dict[tuple[str, str], Identity] = {}
    for identity in map(canonical, identities):
        seen.setdefault((identity.kind, identity.value), identity)
    return list(seen.values())


def canonical(identity: Identity) -> Identity:
    """``identity`` in its canonical form (``core.identity``). Requests are validated at the
    edge; here a value that cannot be made canonical (a row an older version stored, a test's
    made-up address) is kept as given, trimmed, so a lookup still finds it."""
    try:
        value = normal_identity(identity.kind, identity.value)
    except InvalidIdentity:
        value = identity.value.strip()
    return identity if value == identity.value else Identity(kind=identity.kind, value=value)


class Profiles:
    def __init__(self, engine: Engine, clock: Clock, ids: IdFactory) -> None:
        self.engine = engine
        self.clock = clock
        self.ids = ids
        #: called as ``(survivor_id, merged_id)`` after two profiles were merged
        self.on_merge: list[Callable[[str, str], None]] = []
        #: queues the CRM sync out (a created profile, a merge); set by the store
        self.sync: SyncOut | None = None

    # --- customers ------------------------------------------------------------------------

    def _profile(self, conn: Connection, customer_id: str) -> CustomerProfile | None:
        row = conn.execute(
            select(db.customers).where(db.customers.c.id == customer_id)
        ).mappings().first()
        if row is None:
            return None
        ids = conn.execute(
            select(db.identities.c.kind, db.identities.c.value)
            .where(db.identities.c.customer_id == customer_id)
            .order_by(db.identities.c.id)
        ).all()
        return CustomerProfile(
            id=row["id"],
            name=row["name"],
            identities=[Identity(kind=k, value=v) for k, v in ids],
            attributes=row["attributes"] or {},
            lifecycle_stage=row["lifecycle_stage"],
            consent=row["consent"] or {},
            timezone=row["timezone"],
            locale=row["locale"] or "",
            channel_preference=row["channel_preference"],
            created_at=utc(row["created_at"]),
            updated_at=utc(row["updated_at"]),
        )

    def get_customer(self, customer_id: str) -> CustomerProfile | None:
        """The profile, or the one it was merged into."""
        with self.engine.connect() as conn:
            live = self._live_id(conn, customer_id)
            return self._profile(conn, live) if live else None

    def find_customer(self, identity: Identity) -> CustomerProfile | None:
        identity = canonical(identity)
        with self.engine.connect() as conn:
            cid = self._owner_of(conn, identity)
            return self._profile(conn, cid) if cid else None

    def create_customer(
        self,
        identities: Sequence[Identity],
        stage: str,
        *,
        name: str | None = None,
        timezone: str = "UTC",
        attributes: dict[str, Any] | None = None,
        consent: dict[Channel, Any] | None = None,
        customer_id: str | None = None,
    ) -> CustomerProfile:
        now = self.clock.now()
        cid = customer_id or self.ids("cus")
        identities = canonical_all(identities)
        with self.engine.begin() as conn:
            conn.execute(
                insert(db.customers).values(
                    id=cid,
                    name=name,
                    lifecycle_stage=stage,
                    timezone=timezone,
                    attributes=attributes or {},
                    consent={k: consent_dict(v) for k, v in (consent or {}).items()},
                    created_at=now,
                    updated_at=now,
                )
            )
            for ident in identities:
                conn.execute(
                    insert(db.identities).values(
                        customer_id=cid, kind=ident.kind, value=ident.value
                    )
                )
            if self.sync is not None:
                self.sync.queue(conn, cid, [("profile.updated", {"created": True})], now=now)
        profile = self.get_customer(cid)
        if profile is None:  # pragma: no cover - we just wrote it
            raise RuntimeError("customer vanished")
        return profile

    def _owner_of(self, conn: Connection, identity: Identity) -> str | None:
        """The live profile that holds ``identity`` (following merges)."""
        cid = conn.execute(
            select(db.identities.c.customer_id).where(
                db.identities.c.kind == identity.kind, db.identities.c.value == identity.value
            )
        ).scalar()
        return self._live_id(conn, cid) if cid else None

    @staticmethod
    def _live_id(conn: Connection, customer_id: str) -> str | None:
        seen = set()
        while customer_id not in seen:
            seen.add(customer_id)
            merged = conn.execute(
                select(db.customers.c.merged_into).where(db.customers.c.id == customer_id)
            ).first()
            if merged is None:
                return None
            if not merged.merged_into:
                return customer_id
            customer_id = merged.merged_into
        return customer_id  # pragma: no cover - a merge cycle cannot be written

    def live_customer_id(self, customer_id: str) -> str | None:
        """The profile ``customer_id`` is now (itself, or the one it was merged into)."""
        with self.engine.connect() as conn:
            return self._live_id(conn, customer_id)

    def resolve_customer(
        self,
        identities: Sequence[Identity],
        default_stage: str,
        timezone: str = "UTC",
        *,
        stages: Sequence[str] = (),
    ) -> tuple[CustomerProfile, bool]:
        """The one profile ``identities`` belong to. Returns (profile, created).

        Identities not seen before are linked to it. When they belong to two or more profiles
        (a web-chat visitor gives the email of a known customer), those profiles are merged
        into the oldest one, keeping all history, and the merge is recorded."""
        identities = canonical_all(identities)
        with self.engine.connect() as conn:
            owners = list(dict.fromkeys(
                cid for ident in identities if (cid := self._owner_of(conn, ident))
            ))
        if not owners:
            try:
                return self.create_customer(identities, default_stage, timezone=timezone), True
            except IntegrityError:
                # a concurrent request created it first
                return self.resolve_customer(identities, default_stage, timezone, stages=stages)
        profiles = [p for cid in owners if (p := self.get_customer(cid))]
        profiles.sort(key=lambda p: (p.created_at, p.id))
        survivor = profiles[0]
        for other in profiles[1:]:
            seen = ", ".join(f"{i.kind}={i.value}" for i in identities)
            self.merge_customers(
                survivor.id, other.id, reason=f"identities seen together: {seen}",
                by="identity_resolution", stages=stages,
            )
        known = {(i.kind, i.value) for i in survivor.identities}
        new = [i for i in identities if (i.kind, i.value) not in known]
        if new or len(profiles) > 1:
            with self.engine.begin() as conn:
                for i in new:
                    try:
                        with conn.begin_nested():
                            conn.execute(insert(db.identities).values(
                                customer_id=survivor.id, kind=i.kind, value=i.value
                            ))
                    except IntegrityError:
                        pass  # linked by a concurrent request (merged above or next time)
            survivor = self.get_customer(survivor.id) or survivor
        return survivor, False

    def merge_customers(
        self,
        survivor_id: str,
        merged_id: str,
        *,
        reason: str,
        by: str,
        stages: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Merge profile ``merged_id`` into ``survivor_id`` in one transaction and record it.

        Every row of the merged profile (identities, conversations, messages, events,
        decisions, outbox, handoffs, CRM activities, approvals, jobs) moves to the survivor;
        its open conversation joins the survivor's, so the context follows. Attributes: the
        survivor's win, the merged profile fills gaps. Consent: a revocation on either side
        stands. Stage: the further one in ``stages``. The merged id keeps resolving to the
        survivor (``merged_into``). Returns the merge record; merging twice is a no-op."""
        if survivor_id == merged_id:
            raise ValueError("cannot merge a profile into itself")
        now = self.clock.now()
        c = db.customers
        with self.engine.begin() as conn:
            rows = {
                r.id: r for r in conn.execute(
                    select(c).where(c.c.id.in_(sorted([survivor_id, merged_id])))
                    .order_by(c.c.id).with_for_update()
                ).all()
            }
            if survivor_id not in rows or merged_id not in rows:
                raise KeyError(survivor_id if survivor_id not in rows else merged_id)
            keep, gone = rows[survivor_id], rows[merged_id]
            if gone.merged_into:
                done = conn.execute(
                    select(db.profile_merges).where(db.profile_merges.c.merged_id == merged_id)
                ).first()
                return dict(done._mapping) if done else {"merged_into": gone.merged_into}
            if keep.merged_into:
                raise ValueError(f"{survivor_id} was itself merged into {keep.merged_into}")
            idents = [
                {"kind": k, "value": v} for k, v in conn.execute(
                    select(db.identities.c.kind, db.identities.c.value)
                    .where(db.identities.c.customer_id == merged_id)
                ).all()
            ]
            # the merged profile's open conversation joins the survivor's open one
            open_conv = {
                r.customer_id: r.id for r in conn.execute(
                    select(db.conversations.c.id, db.conversations.c.customer_id).where(
                        db.conversations.c.customer_id.in_([survivor_id, merged_id]),
                        db.conversations.c.status == "open",
                    ).order_by(db.conversations.c.created_at)
                ).all()
            }
            moved: dict[str, int] = {}
            if survivor_id in open_conv and merged_id in open_conv:
                into, old = open_conv[survivor_id], open_conv[merged_id]
                for table in (db.messages, db.decisions, db.handoffs, db.approvals):
                    moved[f"{table.name}_rethreaded"] = conn.execute(
                        update(table).where(table.c.conversation_id == old)
                        .values(conversation_id=into)
                    ).rowcount
                conn.execute(update(db.conversations).where(db.conversations.c.id == old)
                             .values(status="merged", updated_at=now))
                human = conn.execute(
                    select(func.count()).select_from(db.handoffs).where(
                        db.handoffs.c.conversation_id == into,
                        db.handoffs.c.status.in_(OPEN_HANDOFF),
                    )
                ).scalar_one()
                if human:
                    conn.execute(update(db.conversations).where(db.conversations.c.id == into)
                                 .values(owner="human", updated_at=now))
            for table in (
                db.identities, db.conversations, db.messages, db.events, db.decisions,
                db.decision_reasons, db.outbox, db.handoffs, db.crm_activities, db.approvals,
                db.jobs, db.consent_events, db.enrolments, db.enrolment_steps,
            ):
                moved[table.name] = conn.execute(
                    update(table).where(table.c.customer_id == merged_id)
                    .values(customer_id=survivor_id)
                ).rowcount
            attributes = {**(gone.attributes or {}), **(keep.attributes or {})}
            scores = {**(gone.attributes or {}).get("intent_scores", {})}
            for name, value in (keep.attributes or {}).get("intent_scores", {}).items():
                scores[name] = max(value, scores.get(name, 0.0))
            if scores:
                attributes["intent_scores"] = scores
            stage = keep.lifecycle_stage
            if stages and gone.lifecycle_stage in stages and stage in stages:
                stage = max(stage, gone.lifecycle_stage, key=list(stages).index)
            consent = strictest_consent(keep.consent or {}, gone.consent or {})
            record_consent(conn, survivor_id, keep.consent or {}, consent, CrmChange(
                consent_source="merge", consent_by=by,
                consent_evidence=f"merged {merged_id} into {survivor_id}"), now=now)
            conn.execute(update(c).where(c.c.id == survivor_id).values(
                name=keep.name or gone.name,
                timezone=keep.timezone or gone.timezone,
                locale=keep.locale or gone.locale,
                channel_preference=keep.channel_preference or gone.channel_preference,
                lifecycle_stage=stage,
                attributes=attributes,
                consent=consent,
                updated_at=now,
            ))
            conn.execute(update(c).where(c.c.id == merged_id).values(
                merged_into=survivor_id, updated_at=now
            ))
            record = {
                "id": self.ids("mrg"), "survivor_id": survivor_id, "merged_id": merged_id,
                "reason": reason, "by": by, "identities": idents, "moved": moved,
                "created_at": now,
            }
            conn.execute(insert(db.profile_merges).values(**record))
            activity = {"id": self.ids("act"), "kind": "merge",
                        "body": {"merged_id": merged_id, "reason": reason, "by": by,
                                 "identities": idents}}
            conn.execute(insert(db.crm_activities).values(
                **activity, customer_id=survivor_id, decision_id=None, done=True,
                created_at=now,
            ))
            if self.sync is not None:
                self.sync.queue(conn, survivor_id, [("crm.activity", {
                    **activity, "decision_id": None})], now=now)
        for hook in self.on_merge:
            hook(survivor_id, merged_id)
        return record

    def normalise_identities(self, stages: Sequence[str] = ()) -> dict[str, int]:
        """Bring identities stored before normalisation to their canonical form (once: a cheap
        query finds none the next time). Where the canonical form already belongs to another
        profile, the two are one person: merged into the older, recorded like any merge.
        Values that cannot be made canonical are left as they are."""
        i = db.identities
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(i.c.id, i.c.customer_id, i.c.kind, i.c.value)
                .where(i.c.kind.in_(("phone", "email")))
                .where((i.c.value != func.trim(i.c.value))
                       | ((i.c.kind == "email") & (i.c.value != func.lower(i.c.value)))
                       | ((i.c.kind == "phone") & ~i.c.value.like("+%"))
                       | ((i.c.kind == "phone") & i.c.value.like("% %"))
                       | ((i.c.kind == "phone") & i.c.value.like("%-%"))
                       | ((i.c.kind == "phone") & i.c.value.like("%(%")))
                .order_by(i.c.id)
            ).all()
        done = {"normalised": 0, "merged": 0}
        for row in rows:
            fixed = canonical(Identity(kind=row.kind, value=row.value))
            if fixed.value == row.value:
                continue
            with self.engine.connect() as conn:
                owner = self._owner_of(conn, fixed)
                mine = self._live_id(conn, row.customer_id)
            if owner is None:
                with self.engine.begin() as conn:
                    conn.execute(update(i).where(i.c.id == row.id).values(value=fixed.value))
                done["normalised"] += 1
                continue
            if mine is not None and mine != owner:
                older, newer = sorted(
                    (p for cid in (owner, mine) if (p := self.get_customer(cid))),
                    key=lambda p: (p.created_at, p.id))
                self.merge_customers(
                    older.id, newer.id, by="identity_normalisation", stages=stages,
                    reason=f"identities normalised: {row.kind} {row.value!r} is {fixed.value}")
                done["merged"] += 1
            # the canonical form is held already: this spelling is a duplicate of it
            with self.engine.begin() as conn:
                conn.execute(i.delete().where(i.c.id == row.id))
            done["normalised"] += 1
        return done

    def merges(self, customer_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.profile_merges)
                .where((db.profile_merges.c.survivor_id == customer_id)
                       | (db.profile_merges.c.merged_id == customer_id))
                .order_by(db.profile_merges.c.created_at)
            ).all()
        return [dict(r._mapping) for r in rows]

    def list_customers(self, limit: int = 100) -> list[CustomerProfile]:
        with self.engine.connect() as conn:
            ids = conn.execute(
                select(db.customers.c.id).order_by(db.customers.c.created_at).limit(limit)
            ).scalars()
            return [p for cid in list(ids) if (p := self._profile(conn, cid))]

    # --- events ---------------------------------------------------------------------------

    def add_event(self, event: Event) -> bool:
        """Store an event; False if its id was already stored."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(db.events).values(**event.model_dump()))
            return True
        except IntegrityError:
            return False

    def recent_events(self, customer_id: str, since: datetime, limit: int = 200) -> list[Event]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.events)
                .where(db.events.c.customer_id == customer_id, db.events.c.occurred_at >= since)
                .order_by(db.events.c.occurred_at.desc())
                .limit(limit)
            ).mappings()
            return [
                Event(**{**r, "occurred_at": utc(r["occurred_at"])}) for r in rows
            ]
