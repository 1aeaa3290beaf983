"""The handoffs' tables: read for the bot (what people did while they owned a conversation),
and read and written for the inbox (:class:`HandoffRepository`).

The repository decides nothing: which changes are allowed is the inbox service's state machine
(``journey.handoffs``). Each change is one transaction in which the service's ``guard`` sees the
row first (it raises to refuse), then one conditional ``UPDATE … WHERE status = <expected>``
makes exactly one of two concurrent changes win. Events and their webhooks are written by
:meth:`memory.effects.EffectWriter.handoff_event`; a person's reply (message and outbox row) by
:meth:`memory.effects.EffectWriter.apply`, the writer a turn's messages go through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from core.clock import Clock, aware, utc
from core.domain import Channel, Decision, Handback, Handoff
from core.effects import OutboundMessage, TurnEffects
from core.inbox import ACTIVE, HandoffEvent, HandoffFacts, HandoffRecord, HandoffStatus
from memory import db
from memory.decisions import decision_from_row
from memory.effects import EffectWriter

#: a handoff people still own (the conversation is theirs)
OPEN_HANDOFF = ACTIVE

#: Run inside a change's transaction on the handoff as it is then (None: no such handoff);
#: raises to refuse the change, else returns the handoff.
Guard = Callable[[HandoffRecord | None], HandoffRecord]

_WITH_NAME = select(db.handoffs, db.customers.c.name.label("customer_name")).join(
    db.customers, db.customers.c.id == db.handoffs.c.customer_id
)


def load_handback(
    engine: Engine, conversation_id: str, since: datetime | None = None
) -> Handback | None:
    """What the bot should know when it takes a conversation back: the last closed handoff
    (closed after ``since``), its notes and outcome, and what the person told the customer."""
    h = db.handoffs
    query = select(h).where(h.c.conversation_id == conversation_id,
                            h.c.status.in_(("resolved", "returned")))
    if since is not None:
        query = query.where(h.c.closed_at >= since)
    with engine.connect() as conn:
        row = conn.execute(query.order_by(h.c.closed_at.desc()).limit(1)).first()
        if row is None:
            return None
        rows = conn.execute(
            select(db.handoff_events).where(db.handoff_events.c.handoff_id == row.id,
                                            db.handoff_events.c.kind.in_(("note", "reply")))
            .order_by(db.handoff_events.c.created_at, db.handoff_events.c.id)
        ).all()
    events = [(r.kind, dict(r.body or {})) for r in rows]
    return Handback(
        handoff_id=row.id, status=row.status, outcome=row.outcome,
        by=row.closed_by or row.assignee or "",
        closed_at=utc(row.closed_at or row.updated_at),
        notes=[str(body.get("text", "")) for kind, body in events if kind == "note"],
        replies=[str(body.get("text", "")) for kind, body in events if kind == "reply"],
    )


def handoff_from_row(row: Any) -> Handoff:
    return Handoff(
        id=row.id, conversation_id=row.conversation_id, customer_id=row.customer_id,
        queue=row.queue, reason=row.reason, summary=row.summary, priority=row.priority,
        status=row.status, decision_id=row.decision_id,
        created_at=utc(row.created_at),
    )


def record_from_row(row: Any) -> HandoffRecord:
    return HandoffRecord(
        id=row.id, conversation_id=row.conversation_id, customer_id=row.customer_id,
        decision_id=row.decision_id, queue=row.queue, reason=row.reason, summary=row.summary,
        priority=row.priority, status=row.status, created_at=utc(row.created_at),
        updated_at=utc(row.updated_at), assignee=row.assignee,
        claimed_at=aware(row.claimed_at), closed_at=aware(row.closed_at),
        closed_by=row.closed_by, outcome=row.outcome,
        customer_name=row._mapping.get("customer_name"),
    )


def event_from_row(row: Any) -> HandoffEvent:
    return HandoffEvent(
        id=row.id, handoff_id=row.handoff_id, kind=row.kind, actor=row.actor,
        body=dict(row.body or {}), created_at=utc(row.created_at),
    )


class HandoffRepository:
    def __init__(self, engine: Engine, clock: Clock, effects: EffectWriter) -> None:
        self.engine = engine
        self.clock = clock
        self.effects = effects

    # --- for the bot -------------------------------------------------------------------------

    def active(self, conversation_id: str) -> Handoff | None:
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
            return handoff_from_row(row) if row else None

    def of_customer(self, customer_id: str | None = None) -> list[Handoff]:
        query = select(db.handoffs).order_by(db.handoffs.c.created_at)
        if customer_id:
            query = query.where(db.handoffs.c.customer_id == customer_id)
        with self.engine.connect() as conn:
            return [handoff_from_row(r) for r in conn.execute(query).all()]

    def set_status(self, handoff_id: str, status: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(db.handoffs)
                .where(db.handoffs.c.id == handoff_id)
                .values(status=status, updated_at=self.clock.now())
            )

    # --- the inbox: reading ------------------------------------------------------------------

    def find(self, handoff_id: str) -> HandoffRecord | None:
        with self.engine.connect() as conn:
            return self._find(conn, handoff_id)

    def query(
        self,
        *,
        queues: Sequence[str] | None = None,
        statuses: Sequence[str] | None = None,
        customer_id: str | None = None,
        limit: int = 100,
    ) -> list[HandoffRecord]:
        """Newest first, in ``queues`` and ``statuses`` (None: any)."""
        h = db.handoffs
        query = _WITH_NAME
        if queues is not None:
            query = query.where(h.c.queue.in_(queues))
        if statuses is not None:
            query = query.where(h.c.status.in_(statuses))
        if customer_id:
            query = query.where(h.c.customer_id == customer_id)
        query = query.order_by(h.c.created_at.desc(), h.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [record_from_row(r) for r in conn.execute(query).all()]

    def facts(self, records: Sequence[HandoffRecord]) -> list[HandoffFacts]:
        """What the views of ``records`` need besides the rows, in three queries whatever their
        number (the console polls this)."""
        if not records:
            return []
        ids = [r.id for r in records]
        m, e = db.messages, db.handoff_events
        # the customer's last channel per conversation: the newest inbound message's
        newest = (
            select(m.c.conversation_id, m.c.channel,
                   func.row_number().over(
                       partition_by=m.c.conversation_id,
                       order_by=(m.c.created_at.desc(), m.c.id.desc())).label("n"))
            .where(m.c.conversation_id.in_({r.conversation_id for r in records}),
                   m.c.direction == "inbound")
            .subquery()
        )
        stamps: dict[str, dict[str, list[datetime]]] = {}
        routing: dict[str, set[str]] = {}
        with self.engine.connect() as conn:
            channels = dict(conn.execute(
                select(newest.c.conversation_id, newest.c.channel).where(newest.c.n == 1)
            ).all())
            for hid, kind, at in conn.execute(
                select(e.c.handoff_id, e.c.kind, e.c.created_at).where(
                    e.c.handoff_id.in_(ids), e.c.kind.in_(("reply", "customer_message")))
            ).all():
                stamps.setdefault(hid, {}).setdefault(kind, []).append(utc(at))
            for decision_id, code in conn.execute(
                select(db.decision_reasons.c.decision_id, db.decision_reasons.c.code).where(
                    db.decision_reasons.c.decision_id.in_(
                        [r.decision_id for r in records if r.decision_id]),
                    db.decision_reasons.c.code.like("escalate_to_human:%"))
            ).all():
                routing.setdefault(decision_id, set()).add(code.split(":", 1)[1])
        return [
            HandoffFacts(
                channel=channels.get(r.conversation_id),
                replies=stamps.get(r.id, {}).get("reply", []),
                customer_messages=stamps.get(r.id, {}).get("customer_message", []),
                routing=frozenset(routing.get(r.decision_id or "", ())),
            )
            for r in records
        ]

    def events(self, handoff_id: str) -> list[HandoffEvent]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.handoff_events).where(db.handoff_events.c.handoff_id == handoff_id)
                .order_by(db.handoff_events.c.created_at, db.handoff_events.c.id)
            ).all()
        return [event_from_row(r) for r in rows]

    def event(self, event_id: str) -> HandoffEvent:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(db.handoff_events).where(db.handoff_events.c.id == event_id)
            ).one()
        return event_from_row(row)

    def event_by_key(self, handoff_id: str, key: str) -> HandoffEvent | None:
        with self.engine.connect() as conn:
            return self._by_key(conn, handoff_id, key)

    def recent_decisions(self, customer_id: str, limit: int) -> list[Decision]:
        """The customer's decisions, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.decisions).where(db.decisions.c.customer_id == customer_id)
                .order_by(db.decisions.c.created_at.desc(), db.decisions.c.id.desc())
                .limit(limit)
            ).all()
        return [decision_from_row(d) for d in rows]

    def for_metrics(
        self, *, since: datetime | None = None, queues: Sequence[str] | None = None
    ) -> list[HandoffRecord]:
        """Handoffs created since ``since`` in ``queues`` (None: all), without names."""
        h = db.handoffs
        query = select(h)
        if since is not None:
            query = query.where(h.c.created_at >= since)
        if queues is not None:
            query = query.where(h.c.queue.in_(queues))
        with self.engine.connect() as conn:
            return [record_from_row(r) for r in conn.execute(query).all()]

    def last_channel(self, conversation_id: str, customer_id: str) -> Channel | None:
        """Where the customer last wrote: this conversation first, then anywhere."""
        m = db.messages
        with self.engine.connect() as conn:
            for where in (m.c.conversation_id == conversation_id,
                          m.c.customer_id == customer_id):
                channel = conn.execute(
                    select(m.c.channel).where(where, m.c.direction == "inbound")
                    .order_by(m.c.created_at.desc(), m.c.id.desc()).limit(1)
                ).scalar()
                if channel:
                    return channel  # type: ignore[no-any-return]
        return None

    def sla_watch(self) -> tuple[list[HandoffRecord], set[tuple[str, str]]]:
        """The active handoffs, and the ``(handoff id, key)`` of their recorded breaches."""
        h, e = db.handoffs, db.handoff_events
        with self.engine.connect() as conn:
            rows = conn.execute(select(h).where(h.c.status.in_(ACTIVE))).all()
            seen = {(r.handoff_id, r.idempotency_key) for r in conn.execute(
                select(e.c.handoff_id, e.c.idempotency_key).where(
                    e.c.kind == "sla_breached",
                    e.c.handoff_id.in_([r.id for r in rows]))
            ).all()} if rows else set()
        return [record_from_row(r) for r in rows], seen

    # --- the inbox: changing -----------------------------------------------------------------

    def claim(self, handoff_id: str, assignee: str, *, now: datetime, guard: Guard) -> bool:
        """``assignee`` takes the handoff if it is open; False if it was not."""
        h = db.handoffs
        with self.engine.begin() as conn:
            guard(self._find(conn, handoff_id))
            won = conn.execute(
                update(h).where(h.c.id == handoff_id, h.c.status == "open")
                .values(status="claimed", assignee=assignee, claimed_at=now, updated_at=now)
            ).rowcount == 1
            if won:
                self.effects.handoff_event(conn, handoff_id, "claimed", assignee, {}, now=now)
        return won

    def reply(
        self, handoff: HandoffRecord, out: OutboundMessage, *, by: str, body: dict[str, Any],
        now: datetime, key: str | None, guard: Guard,
    ) -> tuple[HandoffEvent, bool]:
        """``by``'s reply in one transaction: the message (author ``human:<by>``) and its
        outbox row, by the turn's effect writer; the ``reply`` event; the conversation touched.
        A retry with the same ``key`` that raced this one returns its event and False (nothing
        written)."""
        try:
            with self.engine.begin() as conn:
                guard(self._find(conn, handoff.id))
                self.effects.apply(
                    conn, handoff.customer_id, handoff.conversation_id, None,
                    TurnEffects(outbound=[out]), now, key=f"handoff:{handoff.id}",
                    author=f"human:{by}", key_by="message",
                )
                event_id = self.effects.handoff_event(
                    conn, handoff.id, "reply", by, body, now=now, idempotency_key=key,
                )
                conn.execute(update(db.conversations)
                             .where(db.conversations.c.id == handoff.conversation_id)
                             .values(updated_at=now))
        except IntegrityError as exc:
            return self._raced(handoff.id, key, exc), False
        return self.event(event_id), True

    def add_event(
        self, handoff_id: str, kind: str, actor: str, body: dict[str, Any], *, now: datetime,
        key: str | None, guard: Guard,
    ) -> tuple[HandoffEvent, bool]:
        """Record an event once per ``key``: a repeat returns the first event and False."""
        try:
            with self.engine.begin() as conn:
                guard(self._find(conn, handoff_id))
                if key and (seen := self._by_key(conn, handoff_id, key)):
                    return seen, False
                event_id = self.effects.handoff_event(
                    conn, handoff_id, kind, actor, body, now=now, idempotency_key=key,
                )
        except IntegrityError as exc:
            return self._raced(handoff_id, key, exc), False
        return self.event(event_id), True

    def record_once(
        self, handoff_id: str, kind: str, actor: str, body: dict[str, Any], *, now: datetime,
        key: str,
    ) -> bool:
        """Record an event unless one with ``key`` was (False: another process did)."""
        try:
            with self.engine.begin() as conn:
                self.effects.handoff_event(conn, handoff_id, kind, actor, body, now=now,
                                           idempotency_key=key)
        except IntegrityError:
            return False
        return True

    def close(
        self, handoff_id: str, status: HandoffStatus, *, by: str, outcome: str | None,
        note: str | None, from_open: bool, now: datetime, guard: Guard,
    ) -> bool:
        """Close the handoff if ``by`` holds it (or, ``from_open``, if it is still open), with
        the note and the closing event; the bot owns the conversation again when no other
        handoff is active in it. False if the handoff was not in such a state."""
        h = db.handoffs
        with self.engine.begin() as conn:
            handoff = guard(self._find(conn, handoff_id))
            held = and_(h.c.status == "claimed", h.c.assignee == by)
            won = conn.execute(
                update(h).where(h.c.id == handoff_id,
                                or_(h.c.status == "open", held) if from_open else held)
                .values(status=status, closed_at=now, closed_by=by, outcome=outcome,
                        updated_at=now)
            ).rowcount == 1
            if won:
                if note:
                    self.effects.handoff_event(conn, handoff_id, "note", by, {"text": note},
                                               now=now)
                event: dict[str, Any] = {"outcome": outcome} if outcome else {}
                self.effects.handoff_event(conn, handoff_id, status, by, event, now=now)
                still_open = conn.execute(
                    select(func.count()).select_from(h).where(
                        h.c.conversation_id == handoff.conversation_id, h.c.status.in_(ACTIVE))
                ).scalar_one()
                if not still_open:
                    conn.execute(update(db.conversations)
                                 .where(db.conversations.c.id == handoff.conversation_id)
                                 .values(owner="bot", updated_at=now))
        return won

    # --- internals ---------------------------------------------------------------------------

    @staticmethod
    def _find(conn: Connection, handoff_id: str) -> HandoffRecord | None:
        row = conn.execute(_WITH_NAME.where(db.handoffs.c.id == handoff_id)).first()
        return record_from_row(row) if row else None

    @staticmethod
    def _by_key(conn: Connection, handoff_id: str, key: str) -> HandoffEvent | None:
        row = conn.execute(
            select(db.handoff_events).where(db.handoff_events.c.handoff_id == handoff_id,
                                            db.handoff_events.c.idempotency_key == key)
        ).first()
        return event_from_row(row) if row else None

    def _raced(self, handoff_id: str, key: str | None, exc: IntegrityError) -> HandoffEvent:
        """A concurrent retry with the same idempotency key committed first: its event is the
        answer. Any other integrity error is raised again."""
        with self.engine.connect() as conn:
            seen = self._by_key(conn, handoff_id, key) if key else None
        if seen is None:
            raise exc
        return seen

