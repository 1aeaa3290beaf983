"""The relational store: profiles, conversations, messages, decisions, outbox, handoffs, CRM.

One class over SQLAlchemy Core, the same code on SQLite and PostgreSQL. A turn's effects (the
decision, outbound messages and their outbox rows, CRM changes, handoffs) are written by
:meth:`Store.commit_turn` in one transaction, so a turn is recorded whole or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from core.clock import Clock, IdFactory, SystemClock, utc, uuid_ids
from core.domain import (
    Approval,
    Channel,
    ConsentStatus,
    Conversation,
    CustomerProfile,
    Decision,
    Event,
    Handoff,
    Identity,
    Message,
)
from core.effects import (
    Activity,
    CrmChange,
    InboundAccepted,
    LedgerEntry,
    TurnEffects,
)
from journey import db
from journey.jobs import Jobs
from journey.outbox import OutboxQueue

OPEN_HANDOFF = ("open", "claimed")


def _merge_consent(
    stored: dict[str, Any], change: dict[Channel, dict[str, ConsentStatus]]
) -> dict[str, Any]:
    merged = {k: _consent_dict(v) for k, v in stored.items()}
    for channel, purposes in change.items():
        merged[channel] = {**merged.get(channel, {}), **purposes}
    return merged


_CONSENT_RANK = {"revoked": 2, "granted": 1, "unknown": 0}


def _strictest_consent(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two profiles' consent as one: a revocation on either side stands, then a grant."""
    out: dict[str, Any] = {}
    for channel in {*a, *b}:
        left, right = _consent_dict(a.get(channel, {})), _consent_dict(b.get(channel, {}))
        out[channel] = {
            purpose: max(left.get(purpose, "unknown"), right.get(purpose, "unknown"),
                         key=lambda s: _CONSENT_RANK.get(s, 0))
            for purpose in {*left, *right}
        }
    return out


def _consent_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):  # a bare status: the channel as a whole
        return {"service": value, "marketing": "revoked" if value == "revoked" else "unknown"}
    return dict(value)


class Store:
    def __init__(
        self, engine: Engine, clock: Clock | None = None, ids: IdFactory = uuid_ids
    ) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()
        self.ids = ids
        self.jobs = Jobs(engine, self.clock, ids)
        #: queue a signed webhook for every handoff event (``JOURNEY_HANDOFF_WEBHOOK_URL``)
        self.handoff_webhooks = False
        self.outbox_queue = OutboxQueue(engine, self.clock)
        #: called as ``(survivor_id, merged_id)`` after two profiles were merged
        self.on_merge: list[Callable[[str, str], None]] = []

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
            created_at=utc(row["created_at"]),
            updated_at=utc(row["updated_at"]),
        )

    def get_customer(self, customer_id: str) -> CustomerProfile | None:
        """The profile, or the one it was merged into."""
        with self.engine.connect() as conn:
            live = self._live_id(conn, customer_id)
            return self._profile(conn, live) if live else None

    def find_customer(self, identity: Identity) -> CustomerProfile | None:
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
        with self.engine.begin() as conn:
            conn.execute(
                insert(db.customers).values(
                    id=cid,
                    name=name,
                    lifecycle_stage=stage,
                    timezone=timezone,
                    attributes=attributes or {},
                    consent={k: _consent_dict(v) for k, v in (consent or {}).items()},
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
                db.jobs,
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
            conn.execute(update(c).where(c.c.id == survivor_id).values(
                name=keep.name or gone.name,
                timezone=keep.timezone or gone.timezone,
                lifecycle_stage=stage,
                attributes=attributes,
                consent=_strictest_consent(keep.consent or {}, gone.consent or {}),
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
            conn.execute(insert(db.crm_activities).values(
                id=self.ids("act"), customer_id=survivor_id, decision_id=None, kind="merge",
                body={"merged_id": merged_id, "reason": reason, "by": by,
                      "identities": idents},
                done=True, created_at=now,
            ))
        for hook in self.on_merge:
            hook(survivor_id, merged_id)
        return record

    def merges(self, customer_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.profile_merges)
                .where((db.profile_merges.c.survivor_id == customer_id)
                       | (db.profile_merges.c.merged_id == customer_id))
                .order_by(db.profile_merges.c.created_at)
            ).all()
        return [dict(r._mapping) for r in rows]

    def update_customer(
        self,
        customer_id: str,
        *,
        stage: str | None = None,
        attributes: dict[str, Any] | None = None,
        consent: dict[Channel, Any] | None = None,
        name: str | None = None,
    ) -> None:
        with self.engine.begin() as conn:
            self._apply_crm(conn, customer_id, CrmChange(
                stage=stage, fields=attributes or {},
                consent={k: _consent_dict(v) for k, v in (consent or {}).items()},
            ))
            if name is not None:
                conn.execute(
                    update(db.customers).where(db.customers.c.id == customer_id).values(name=name)
                )

    def apply_profile_change(
        self, customer_id: str, change: CrmChange, activities: Sequence[Activity] = ()
    ) -> None:
        """A signal's effect on the profile (traits, intent scores, a stage rule), recorded."""
        now = self.clock.now()
        with self.engine.begin() as conn:
            self._apply_crm(conn, customer_id, change)
            for act in activities:
                conn.execute(insert(db.crm_activities).values(
                    id=act.id, customer_id=customer_id, decision_id=None, kind=act.kind,
                    body=act.body, done=True, created_at=now,
                ))

    def _apply_crm(self, conn: Connection, customer_id: str, change: CrmChange) -> None:
        # the row is locked (PostgreSQL) so concurrent turns and approvals cannot lose updates;
        # SQLite already serialises writers and the turn has written before it gets here
        row = conn.execute(
            select(db.customers.c.attributes, db.customers.c.consent)
            .where(db.customers.c.id == customer_id)
            .with_for_update()
        ).first()
        if row is None:
            raise KeyError(customer_id)
        values: dict[str, Any] = {"updated_at": self.clock.now()}
        if change.stage:
            values["lifecycle_stage"] = change.stage
        if change.fields or change.increments:
            attributes = {**(row.attributes or {}), **change.fields}
            for name, delta in change.increments.items():
                attributes[name] = round(float(attributes.get(name) or 0) + delta, 2)
            values["attributes"] = attributes
        if change.consent:
            values["consent"] = _merge_consent(row.consent or {}, change.consent)
        conn.execute(update(db.customers).where(db.customers.c.id == customer_id).values(**values))

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

    # --- conversations and messages -------------------------------------------------------

    def _conversation(self, row: Any) -> Conversation:
        return Conversation(
            id=row.id,
            customer_id=row.customer_id,
            status=row.status,
            owner=row.owner,
            created_at=utc(row.created_at),
            updated_at=utc(row.updated_at),
        )

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(db.conversations).where(db.conversations.c.id == conversation_id)
            ).first()
            return self._conversation(row) if row else None

    def open_conversation(self, customer_id: str) -> Conversation:
        """The customer's open conversation (one across all channels), created if none."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(db.conversations)
                .where(
                    db.conversations.c.customer_id == customer_id,
                    db.conversations.c.status == "open",
                )
                .order_by(db.conversations.c.created_at.desc())
                .limit(1)
            ).first()
            if row is not None:
                return self._conversation(row)
            now = self.clock.now()
            cid = self.ids("conv")
            conn.execute(
                insert(db.conversations).values(
                    id=cid, customer_id=customer_id, status="open", owner="bot",
                    created_at=now, updated_at=now,
                )
            )
            return Conversation(
                id=cid, customer_id=customer_id, status="open", owner="bot",
                created_at=now, updated_at=now,
            )

    def list_conversations(self, customer_id: str) -> list[Conversation]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.conversations)
                .where(db.conversations.c.customer_id == customer_id)
                .order_by(db.conversations.c.created_at)
            ).all()
            return [self._conversation(r) for r in rows]

    @staticmethod
    def _message(row: Any) -> Message:
        return Message(
            id=row.id,
            conversation_id=row.conversation_id,
            customer_id=row.customer_id,
            direction=row.direction,
            channel=row.channel,
            text=row.text,
            external_id=row.external_id,
            author=row.author,
            created_at=utc(row.created_at),
            meta=row.meta or {},
        )

    def accept_inbound(
        self,
        conversation: Conversation,
        channel: Channel,
        text: str,
        external_id: str | None,
        meta: dict[str, Any] | None = None,
    ) -> InboundAccepted:
        """Store an inbound message, once per (channel, external_id).

        Its time is read while the conversation's row is locked (PostgreSQL; SQLite's write
        lock), so within a conversation the order of ``created_at`` is the order in which the
        messages became visible: a turn that looks for earlier messages finds all of them."""
        mid = self.ids("msg")
        c = db.conversations
        try:
            with self.engine.begin() as conn:
                conn.execute(update(c).where(c.c.id == conversation.id)
                             .values(updated_at=c.c.updated_at))
                now = self.clock.now()
                conn.execute(
                    insert(db.messages).values(
                        id=mid, conversation_id=conversation.id,
                        customer_id=conversation.customer_id, direction="inbound",
                        channel=channel, text=text, external_id=external_id, author="customer",
                        turn_status="pending", turn_started_at=now, created_at=now,
                        meta=meta or None,
                    )
                )
                conn.execute(
                    update(db.conversations)
                    .where(db.conversations.c.id == conversation.id)
                    .values(updated_at=now)
                )
        except IntegrityError:
            if external_id is None:
                raise
            existing = self.find_inbound(channel, external_id)
            if existing is None:
                raise
            return existing
        message = Message(
            id=mid, conversation_id=conversation.id, customer_id=conversation.customer_id,
            direction="inbound", channel=channel, text=text, external_id=external_id,
            created_at=now, meta=meta or {},
        )
        return InboundAccepted(message=message, is_new=True, turn_status="pending")

    def find_inbound(self, channel: Channel, external_id: str) -> InboundAccepted | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(db.messages).where(
                    db.messages.c.channel == channel, db.messages.c.external_id == external_id
                )
            ).first()
        if row is None:
            return None
        return InboundAccepted(
            message=self._message(row), is_new=False, turn_status=row.turn_status
        )

    def waiting_before(self, message: Message, since: datetime, limit: int = 50) -> list[Message]:
        """The conversation's inbound messages that arrived before ``message`` (and after
        ``since``) and still wait for their turn, oldest first."""
        m = db.messages
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(m).where(
                    m.c.conversation_id == message.conversation_id,
                    m.c.direction == "inbound", m.c.turn_status == "pending",
                    m.c.created_at >= since, m.c.id != message.id,
                    (m.c.created_at < message.created_at)
                    | and_(m.c.created_at == message.created_at, m.c.id < message.id),
                ).order_by(m.c.created_at, m.c.id).limit(limit)
            ).all()
        return [self._message(r) for r in rows]

    def fail_turn(self, message_id: str) -> None:
        """The message's turn failed for good: it no longer holds up its conversation."""
        with self.engine.begin() as conn:
            conn.execute(update(db.messages).where(db.messages.c.id == message_id,
                                                   db.messages.c.turn_status == "pending")
                         .values(turn_status="failed"))

    def messages(
        self,
        *,
        conversation_id: str | None = None,
        customer_id: str | None = None,
        limit: int | None = None,
    ) -> list[Message]:
        """Messages oldest first; with ``limit``, the newest ``limit`` of them."""
        query = select(db.messages)
        if conversation_id:
            query = query.where(db.messages.c.conversation_id == conversation_id)
        if customer_id:
            query = query.where(db.messages.c.customer_id == customer_id)
        query = query.order_by(db.messages.c.created_at.desc(), db.messages.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [self._message(r) for r in reversed(rows)]

    def last_inbound_meta(self, customer_id: str, channel: Channel) -> dict[str, Any] | None:
        """The channel details of the customer's latest inbound message there (an email's
        Message-ID and subject, to thread a reply)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(db.messages.c.meta).where(
                    db.messages.c.customer_id == customer_id, db.messages.c.channel == channel,
                    db.messages.c.direction == "inbound", db.messages.c.meta.is_not(None),
                ).order_by(db.messages.c.created_at.desc()).limit(1)
            ).first()
        return dict(row.meta) if row and row.meta else None

    def get_message(self, message_id: str) -> Message | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(db.messages).where(db.messages.c.id == message_id)).first()
        return self._message(row) if row else None

    def outbound_since(
        self, customer_id: str, channel: Channel, after_message_id: str | None, limit: int = 100
    ) -> list[Message]:
        """The customer's outbound messages on ``channel`` delivered after ``after_message_id``
        (all if None), in delivery order: what a web-chat stream has not shown yet. A message
        still waiting in the outbox (deferred, scheduled) is not delivered and not listed."""
        m, o = db.messages, db.outbox
        query = (
            select(m, o.c.sent_at.label("delivered_at"))
            .join(o, o.c.message_id == m.c.id)
            .where(m.c.customer_id == customer_id, m.c.channel == channel,
                   m.c.direction == "outbound", o.c.status == "sent")
        )
        with self.engine.connect() as conn:
            if after_message_id:
                after = conn.execute(
                    select(o.c.sent_at, o.c.message_id).where(o.c.message_id == after_message_id)
                ).first()
                if after is not None and after.sent_at is not None:
                    query = query.where(
                        (o.c.sent_at > after.sent_at)
                        | and_(o.c.sent_at == after.sent_at, m.c.id > after.message_id)
                    )
            rows = conn.execute(query.order_by(o.c.sent_at, m.c.id).limit(limit)).all()
        return [self._message(r) for r in rows]

    # --- handoffs -------------------------------------------------------------------------

    @staticmethod
    def _handoff(row: Any) -> Handoff:
        return Handoff(
            id=row.id, conversation_id=row.conversation_id, customer_id=row.customer_id,
            queue=row.queue, reason=row.reason, summary=row.summary, priority=row.priority,
            status=row.status, decision_id=row.decision_id,
            created_at=utc(row.created_at),
        )

    def active_handoff(self, conversation_id: str) -> Handoff | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(db.handoffs)
                .where(
                    db.handoffs.c.conversation_id == conversation_id,
                    db.handoffs.c.status.in_(OPEN_HANDOFF),
                )
                .order_by(db.handoffs.c.created_at.desc())
                .limit(1)
            ).first()
            return self._handoff(row) if row else None

    def handoffs(self, customer_id: str | None = None) -> list[Handoff]:
        query = select(db.handoffs).order_by(db.handoffs.c.created_at)
        if customer_id:
            query = query.where(db.handoffs.c.customer_id == customer_id)
        with self.engine.connect() as conn:
            return [self._handoff(r) for r in conn.execute(query).all()]

    def add_handoff_event(
        self,
        conn: Connection,
        handoff_id: str,
        kind: str,
        actor: str,
        body: dict[str, Any],
        *,
        now: datetime,
        idempotency_key: str | None = None,
    ) -> str:
        """Record what happened to a handoff, in the caller's transaction; with outbound
        webhooks configured, the signed delivery is queued in the same transaction, so an event
        is never recorded without its webhook (nor the other way round)."""
        event_id = self.ids("hev")
        conn.execute(insert(db.handoff_events).values(
            id=event_id, handoff_id=handoff_id, kind=kind, actor=actor, body=body,
            idempotency_key=idempotency_key, created_at=now,
        ))
        if self.handoff_webhooks:
            conn.execute(insert(db.jobs).values(
                id=self.ids("job"), kind="webhook", customer_id=None,
                dedupe_key=f"webhook:{event_id}", payload={"event_id": event_id}, due_at=now,
                status="pending", attempts=0, created_at=now, updated_at=now,
            ))
        return event_id

    def set_handoff_status(self, handoff_id: str, status: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(db.handoffs)
                .where(db.handoffs.c.id == handoff_id)
                .values(status=status, updated_at=self.clock.now())
            )

    # --- decisions and the turn transaction ----------------------------------------------

    @staticmethod
    def _decision(row: Any) -> Decision:
        data = dict(row._mapping)
        return Decision.model_validate(
            {
                **data,
                "inputs": data.get("inputs") or {},
                "rejected": data.get("rejected") or [],
                "policy_version": data.get("policy_version") or "",
                "created_at": utc(row.created_at),
            }
        )

    def get_decision(self, decision_id: str) -> Decision | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(db.decisions).where(db.decisions.c.id == decision_id)
            ).first()
        return self._decision(row) if row else None

    def decision_for_job(self, job_id: str) -> Decision | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(db.decisions).where(db.decisions.c.job_id == job_id)
            ).first()
            return self._decision(row) if row else None

    def decision_for_inbound(self, message_id: str) -> Decision | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(db.decisions).where(db.decisions.c.inbound_message_id == message_id)
            ).first()
            return self._decision(row) if row else None

    def decisions(
        self,
        *,
        conversation_id: str | None = None,
        customer_id: str | None = None,
        limit: int = 200,
    ) -> list[Decision]:
        query = select(db.decisions).order_by(db.decisions.c.created_at).limit(limit)
        if conversation_id:
            query = query.where(db.decisions.c.conversation_id == conversation_id)
        if customer_id:
            query = query.where(db.decisions.c.customer_id == customer_id)
        with self.engine.connect() as conn:
            return [self._decision(r) for r in conn.execute(query).all()]

    def commit_turn(self, decision: Decision, effects: TurnEffects) -> Decision:
        """Record the decision and apply its effects in one transaction.

        Idempotent per inbound message (per job, for a proactive decision): if a decision
        for it exists, nothing is written and the stored decision is returned.
        """
        now = decision.created_at
        if decision.inbound_message_id is not None:
            same = db.decisions.c.inbound_message_id == decision.inbound_message_id
            key = decision.inbound_message_id
        elif decision.job_id is not None:
            same = db.decisions.c.job_id == decision.job_id
            key = f"job:{decision.job_id}"
        else:
            raise ValueError("a decision answers an inbound message or a job")
        try:
            with self.engine.begin() as conn:
                exists = conn.execute(select(db.decisions.c.id).where(same)).first()
                if exists:
                    raise _AlreadyRecorded
                conn.execute(
                    insert(db.decisions).values(
                        **decision.model_dump(mode="json", exclude={"created_at"}),
                        created_at=now,
                    )
                )
                codes = sorted({
                    code[:160] for code in (
                        *decision.reasons,
                        *(c for v in decision.verdicts for c in v.reason_codes),
                        # ?reason=forbidden_claim finds forbidden_claim:<name> too
                        *(c.split(":", 1)[0] for v in decision.verdicts
                          for c in v.reason_codes if ":" in c),
                    )
                })
                if codes:
                    conn.execute(
                        insert(db.decision_reasons),
                        [
                            {"decision_id": decision.id, "code": code,
                             "customer_id": decision.customer_id}
                            for code in codes
                        ],
                    )
                self._apply_effects(
                    conn, decision.customer_id, decision.conversation_id, decision.id,
                    effects, now, key=key,
                )
                if decision.inbound_message_id is not None:
                    conn.execute(
                        update(db.messages)
                        .where(db.messages.c.id == decision.inbound_message_id)
                        .values(turn_status="done")
                    )
        except (_AlreadyRecorded, IntegrityError):
            with self.engine.connect() as conn:
                row = conn.execute(select(db.decisions).where(same)).first()
            stored = self._decision(row) if row else None
            if stored is None:
                raise
            return stored
        return decision

    def _apply_effects(
        self,
        conn: Connection,
        customer_id: str,
        conversation_id: str,
        decision_id: str,
        effects: TurnEffects,
        now: datetime,
        *,
        key: str,
    ) -> None:
        for i, out in enumerate(effects.outbound):
            conn.execute(
                insert(db.messages).values(
                    id=out.message_id, conversation_id=conversation_id,
                    customer_id=customer_id, direction="outbound",
                    channel=out.channel, text=out.text, author="bot",
                    created_at=now, turn_status=None,
                )
            )
            conn.execute(
                insert(db.outbox).values(
                    id=out.outbox_id, decision_id=decision_id, message_id=out.message_id,
                    customer_id=customer_id, channel=out.channel,
                    address=out.address, text=out.text, purpose=out.purpose,
                    status=out.status, attempts=0, created_at=now,
                    idempotency_key=f"{key}:{i}",
                    sent_at=now if out.status == "sent" else None,
                    not_before=out.not_before, is_reply=out.is_reply,
                    next_attempt_at=out.not_before or now, meta=out.meta or None,
                )
            )
        crm = effects.crm
        if crm.stage or crm.fields or crm.consent or crm.increments:
            self._apply_crm(conn, customer_id, crm)
        for act in effects.activities:
            conn.execute(
                insert(db.crm_activities).values(
                    id=act.id, customer_id=customer_id, decision_id=decision_id,
                    kind=act.kind, body=act.body, done=False, created_at=now,
                )
            )
        for h in effects.handoffs:
            conn.execute(
                insert(db.handoffs).values(
                    **h.model_dump(exclude={"created_at"}), created_at=now, updated_at=now
                )
            )
            self.add_handoff_event(
                conn, h.id, "created", "bot", {"decision_id": decision_id, "queue": h.queue,
                                               "priority": h.priority, "reason": h.reason},
                now=now,
            )
        for a in effects.approvals:
            conn.execute(
                insert(db.approvals).values(
                    **a.model_dump(
                        mode="json", exclude={"created_at", "decided_at", "deliver_at"}
                    ),
                    created_at=now, decided_at=None, deliver_at=a.deliver_at,
                )
            )
        if effects.handoffs:
            conn.execute(
                update(db.conversations)
                .where(db.conversations.c.id == conversation_id)
                .values(owner="human", updated_at=now)
            )

    # --- policy facts and the audit trail ---------------------------------------------------

    def ledger(self, customer_id: str, since: datetime) -> list[LedgerEntry]:
        """Outbound messages delivered (or due) since ``since``, scheduled ones included."""
        at = func.coalesce(db.outbox.c.not_before, db.outbox.c.created_at)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.outbox.c.id, db.outbox.c.channel, db.outbox.c.purpose,
                       at.label("at"), db.outbox.c.is_reply)
                .where(db.outbox.c.customer_id == customer_id, at >= since,
                       db.outbox.c.status != "cancelled")
            ).all()
        return [
            LedgerEntry(id=r.id, channel=r.channel, purpose=r.purpose, at=utc(r.at),
                        is_reply=bool(r.is_reply))
            for r in rows
        ]

    def stalled_turns(self, conversation_id: str, limit: int = 10) -> int:
        """How many of the conversation's latest decisions, in a row, made no progress."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.decisions.c.inputs)
                .where(db.decisions.c.conversation_id == conversation_id)
                .order_by(db.decisions.c.created_at.desc(), db.decisions.c.id.desc())
                .limit(limit)
            ).all()
        count = 0
        for (inputs,) in rows:
            if not (inputs or {}).get("stalled"):
                break
            count += 1
        return count

    def search_decisions(
        self,
        *,
        customer_id: str | None = None,
        conversation_id: str | None = None,
        reason: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Decision]:
        """Decisions newest first, filtered by customer, conversation and reason code."""
        query = select(db.decisions)
        if reason:
            matching = select(db.decision_reasons.c.decision_id).where(
                db.decision_reasons.c.code == reason
            )
            if customer_id:
                matching = matching.where(db.decision_reasons.c.customer_id == customer_id)
            query = query.where(db.decisions.c.id.in_(matching))
        if customer_id:
            query = query.where(db.decisions.c.customer_id == customer_id)
        if conversation_id:
            query = query.where(db.decisions.c.conversation_id == conversation_id)
        query = query.order_by(
            db.decisions.c.created_at.desc(), db.decisions.c.id.desc()
        ).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [self._decision(r) for r in conn.execute(query).all()]

    # --- approvals ----------------------------------------------------------------------------

    @staticmethod
    def _approval(row: Any) -> Approval:
        data = dict(row._mapping)
        for key in ("created_at", "decided_at", "deliver_at"):
            if data[key] is not None:
                data[key] = utc(data[key])
        return Approval.model_validate(data)

    def get_approval(self, approval_id: str) -> Approval | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(db.approvals).where(db.approvals.c.id == approval_id)
            ).first()
            return self._approval(row) if row else None

    def approvals(
        self, *, status: str | None = None, customer_id: str | None = None, limit: int = 100
    ) -> list[Approval]:
        query = select(db.approvals).order_by(db.approvals.c.created_at, db.approvals.c.id)
        if status:
            query = query.where(db.approvals.c.status == status)
        if customer_id:
            query = query.where(db.approvals.c.customer_id == customer_id)
        with self.engine.connect() as conn:
            return [self._approval(r) for r in conn.execute(query.limit(limit)).all()]

    def decide_approval(
        self,
        approval: Approval,
        status: str,
        *,
        by: str,
        note: str | None,
        result: dict[str, Any],
        effects: TurnEffects,
    ) -> Approval:
        """Close a pending approval and apply its effects in one transaction, exactly once.

        If it was already decided (another request, a retried resume) nothing is written and
        the stored approval is returned.
        """
        now = self.clock.now()
        with self.engine.begin() as conn:
            claimed = conn.execute(
                update(db.approvals)
                .where(db.approvals.c.id == approval.id, db.approvals.c.status == "pending")
                .values(status=status, decided_by=by, note=note, result=result,
                        decided_at=now)
            ).rowcount
            if claimed == 1 and status == "approved":
                self._apply_effects(
                    conn, approval.customer_id, approval.conversation_id,
                    approval.decision_id, effects, now, key=f"approval:{approval.id}",
                )
        stored = self.get_approval(approval.id)
        if stored is None:  # pragma: no cover - we just read it
            raise KeyError(approval.id)
        return stored

    # --- read models ------------------------------------------------------------------------

    def outbox(self, customer_id: str | None = None) -> list[dict[str, Any]]:
        query = select(db.outbox).order_by(db.outbox.c.created_at, db.outbox.c.idempotency_key)
        if customer_id:
            query = query.where(db.outbox.c.customer_id == customer_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]

    def crm_activities(self, customer_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.crm_activities)
                .where(db.crm_activities.c.customer_id == customer_id)
                .order_by(db.crm_activities.c.created_at, db.crm_activities.c.id)
            ).all()
            return [dict(r._mapping) for r in rows]

    def counts(self) -> dict[str, int]:
        tables: Iterable[Any] = (
            db.customers, db.messages, db.decisions, db.outbox, db.handoffs, db.events
        )
        with self.engine.connect() as conn:
            return {
                t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in tables
            }

    def inbound_count(self, channel: Channel, external_id: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.count())
                .select_from(db.messages)
                .where(
                    and_(
                        db.messages.c.channel == channel,
                        db.messages.c.external_id == external_id,
                    )
                )
            ).scalar_one()


class _AlreadyRecorded(Exception):
    pass
