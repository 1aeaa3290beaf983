"""Human handoff: queues, SLA timers, the handoff packet, and the inbox's state changes.

A handoff is a state of the conversation: from the moment the bot escalates until a person
resolves it or returns it to the bot, the conversation is owned by people and the bot sends
nothing (the policy gate denies it with ``handoff_active``).

    open ──claim──▶ claimed ──resolve(outcome)──▶ resolved
      │                │
      └──return-to-bot─┴──────────────────────────▶ returned

Every state change is one conditional ``UPDATE … WHERE status = <expected>``: of two agents
claiming at once exactly one row count is 1, the other gets :class:`Conflict`. Repeating a
change that already happened (the same agent claims twice, a retried reply with the same
``Idempotency-Key``) returns the first result and does nothing again.

Errors (mapped to HTTP in ``api/``)::

    HandoffError
    ├── NotFound     404  no such handoff (or not in the agent's queues)
    ├── Forbidden    403  the agent's key does not cover the queue
    ├── Conflict     409  the handoff is not in a state that allows this (claimed by another…)
    └── Rejected     422  the policy refused the reply (consent, channel, content)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from core.clock import utc
from core.domain import Channel, Decision, Message, SendMessage
from core.hub import JOBS_KEY, Hub
from core.stats import percentile
from journey import db
from journey.store import Store
from memory.vector import MemoryRecord, VectorMemory
from policy.later import HANDOFF_ID, LaterSend, recheck_later
from policy.loader import PolicyProvider
from policy.privacy import mask

HandoffStatus = Literal["open", "claimed", "resolved", "returned"]
EventKind = Literal[
    "created", "claimed", "reply", "note", "customer_message", "resolved", "returned",
    "sla_breached",
]
SlaState = Literal["ok", "due_soon", "breached", "met", "missed"]


class HandoffError(Exception):
    status_code = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(HandoffError):
    status_code = 404


class Forbidden(HandoffError):
    status_code = 403


class Conflict(HandoffError):
    status_code = 409


class Rejected(HandoffError):
    status_code = 422


@dataclass(frozen=True)
class Agent:
    """A person working the inbox, known by their API key."""

    name: str
    #: The queues this agent may see and work; None: every queue (``inbox`` or ``admin``).
    queues: frozenset[str] | None = None

    def covers(self, queue: str) -> bool:
        return self.queues is None or queue in self.queues


class Sla(BaseModel):
    """One SLA timer: when it is due, and where it stands now."""

    due_at: datetime | None
    state: SlaState
    #: Seconds left (negative: overdue); for a met or missed timer, how long it took.
    seconds: float | None = None
    label: str = Field(description="For a badge: 'claim in 4m', 'claim overdue 2m'.")


class HandoffView(BaseModel):
    id: str
    conversation_id: str
    customer_id: str
    customer_name: str | None = None
    queue: str
    priority: str
    status: HandoffStatus
    reason: str
    summary: str
    #: The channel the customer last wrote on: where a reply goes.
    channel: str | None = None
    assignee: str | None = None
    outcome: str | None = None
    created_at: datetime
    claimed_at: datetime | None = None
    closed_at: datetime | None = None
    claim_sla: Sla
    resolve_sla: Sla
    #: Customer messages since the last reply by a person.
    unread: int = 0
    routing: list[str] = Field(default_factory=list, description="Routing rules that applied.")


class HandoffEvent(BaseModel):
    id: str
    handoff_id: str
    kind: EventKind
    actor: str
    body: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class ProfileHighlights(BaseModel):
    name: str | None
    stage: str
    identities: dict[str, str]
    timezone: str
    value: float | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    consent: dict[str, str] = Field(default_factory=dict)


class HandoffPacket(BaseModel):
    """Everything a person needs to pick the conversation up without asking again."""

    handoff: HandoffView
    summary: str
    intent: str
    stage: str
    sentiment: str
    reason_codes: list[str]
    profile: ProfileHighlights
    #: The customer's last messages on every channel, oldest first.
    messages: list[Message]
    events: list[HandoffEvent]
    #: The decision trace: the customer's recent decisions, newest first.
    decisions: list[Decision]


class Timing(BaseModel):
    """Seconds: how many were measured, the median and the 90th percentile."""

    n: int = 0
    median_s: float | None = None
    p90_s: float | None = None


class QueueMetrics(BaseModel):
    queue: str
    created: int = 0
    open: int = 0
    claimed: int = 0
    #: Closed by a person with an outcome.
    resolved_by_human: int = 0
    #: Handed back to the bot.
    returned_to_bot: int = 0
    time_to_claim: Timing = Field(default_factory=Timing)
    time_to_resolve: Timing = Field(default_factory=Timing)
    claim_sla_met: int = 0
    claim_sla_missed: int = 0
    resolve_sla_met: int = 0
    resolve_sla_missed: int = 0
    #: Unclaimed (or unresolved) past their SLA right now.
    breached_now: int = 0
    outcomes: dict[str, int] = Field(default_factory=dict)


class HandoffMetrics(BaseModel):
    since: datetime | None
    total: QueueMetrics
    queues: list[QueueMetrics]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _timing(values: list[float]) -> Timing:
    return Timing(n=len(values), median_s=_rounded(percentile(values, 0.5)),
                  p90_s=_rounded(percentile(values, 0.9)))


def human_duration(seconds: float) -> str:
    """``45s``, ``12m``, ``3h 5m``, ``2d 4h``: for badges."""
    s = int(abs(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h}h {m}m" if m else f"{h}h"
    d, h = divmod(s // 3600, 24)
    return f"{d}d {h}h" if h else f"{d}d"


#: ``list`` is also a method of HandoffService
List = list
ACTIVE: tuple[HandoffStatus, ...] = ("open", "claimed")
STATUSES = ("open", "claimed", "resolved", "returned", "active", "closed")
PACKET_MESSAGES = 20
PACKET_DECISIONS = 10
MAX_TEXT = 4000


class HandoffService:
    """The inbox: list, read and change handoffs. Used by the JSON API and the console."""

    def __init__(
        self,
        store: Store,
        policy: PolicyProvider,
        lifecycle_stages: Sequence[str],
        *,
        hub: Hub | None = None,
        memory: VectorMemory | None = None,
    ) -> None:
        self.store = store
        self.engine = store.engine
        self.clock = store.clock
        self.ids = store.ids
        self.policy = policy
        self.stages = tuple(lifecycle_stages)
        self.hub = hub
        self.memory = memory

    # --- reading -----------------------------------------------------------------------------

    def queues(self) -> list[str]:
        return list(self.policy.get().handoff.queues)

    def outcomes(self) -> list[str]:
        return list(self.policy.get().handoff.outcomes)

    def list(
        self,
        agent: Agent,
        *,
        queue: str | None = None,
        status: str | None = None,
        customer_id: str | None = None,
        limit: int = 100,
    ) -> list[HandoffView]:
        """Newest first; ``status`` may also be ``active`` (open or claimed) or ``closed``."""
        h = db.handoffs
        query = select(h, db.customers.c.name.label("customer_name")).join(
            db.customers, db.customers.c.id == h.c.customer_id
        )
        if queue:
            if not agent.covers(queue):
                raise Forbidden(f"your key does not cover the queue {queue!r}")
            query = query.where(h.c.queue == queue)
        elif agent.queues is not None:
            query = query.where(h.c.queue.in_(sorted(agent.queues)))
        if status == "active":
            query = query.where(h.c.status.in_(ACTIVE))
        elif status == "closed":
            query = query.where(h.c.status.in_(("resolved", "returned")))
        elif status:
            query = query.where(h.c.status == status)
        if customer_id:
            query = query.where(h.c.customer_id == customer_id)
        query = query.order_by(h.c.created_at.desc(), h.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return self._views(conn, conn.execute(query).all())

    def view(self, agent: Agent, handoff_id: str) -> HandoffView:
        with self.engine.connect() as conn:
            return self._view(conn, self._row(conn, agent, handoff_id))

    def events(self, agent: Agent, handoff_id: str) -> List[HandoffEvent]:
        with self.engine.connect() as conn:
            self._row(conn, agent, handoff_id)
            return self._events(conn, handoff_id)

    def packet(self, agent: Agent, handoff_id: str) -> HandoffPacket:
        """The handoff with its context: the customer's profile, their last messages on every
        channel (any conversation), the decision that escalated and the recent decisions."""
        with self.engine.connect() as conn:
            row = self._row(conn, agent, handoff_id)
            view = self._view(conn, row)
            events = self._events(conn, handoff_id)
            decision_rows = conn.execute(
                select(db.decisions).where(db.decisions.c.customer_id == row.customer_id)
                .order_by(db.decisions.c.created_at.desc(), db.decisions.c.id.desc())
                .limit(PACKET_DECISIONS)
            ).all()
        decisions = [Store._decision(d) for d in decision_rows]
        origin = next((d for d in decisions if d.id == row.decision_id), None)
        if origin is None and row.decision_id:
            origin = self.store.get_decision(row.decision_id)
        profile = self.store.get_customer(row.customer_id)
        if profile is None:  # pragma: no cover - a handoff's customer always exists
            raise NotFound(f"customer {row.customer_id} not found")
        policy = self.policy.get()
        value_key = policy.handoff.value_attribute
        value = profile.attributes.get(value_key)
        highlights = ProfileHighlights(
            name=profile.name, stage=profile.lifecycle_stage,
            identities={i.kind: i.value for i in profile.identities},
            timezone=profile.timezone,
            value=float(value) if isinstance(value, int | float) and not isinstance(value, bool)
            else None,
            attributes={k: v for k, v in profile.attributes.items()
                        if k != value_key and not isinstance(v, dict | list)},
            consent={c: f"service {v.service}, marketing {v.marketing}"
                     for c, v in sorted(profile.consent.items())},
        )
        return HandoffPacket(
            handoff=view,
            summary=row.summary,
            intent=origin.intent if origin else "unknown",
            stage=origin.stage if origin else profile.lifecycle_stage,
            sentiment=origin.sentiment if origin else "neutral",
            reason_codes=origin.reasons if origin else [],
            profile=highlights,
            messages=self.store.messages(customer_id=row.customer_id, limit=PACKET_MESSAGES),
            events=events,
            decisions=decisions,
        )

    def event_with_handoff(self, event_id: str) -> tuple[HandoffEvent, HandoffView]:
        """An event and its handoff as it is now (for the outbound webhook)."""
        event = self._event(event_id)
        return event, self.view(Agent(name="webhook"), event.handoff_id)

    def metrics(
        self, agent: Agent | None = None, *, since: datetime | None = None
    ) -> HandoffMetrics:
        """Per queue: handoffs created, how long claims and resolutions took (median, p90),
        SLAs met and missed, resolved by a person vs returned to the bot, outcomes. With an
        ``agent`` whose key covers some queues, only those queues are counted."""
        h = db.handoffs
        query = select(h)
        if since is not None:
            query = query.where(h.c.created_at >= since)
        if agent is not None and agent.queues is not None:
            query = query.where(h.c.queue.in_(sorted(agent.queues)))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        handoff = self.policy.get().handoff
        now = self.clock.now()
        by_queue: dict[str, QueueMetrics] = {}
        claims: dict[str, List[float]] = {}
        resolves: dict[str, List[float]] = {}
        for r in rows:
            m = by_queue.setdefault(r.queue, QueueMetrics(queue=r.queue))
            m.created += 1
            created = utc(r.created_at)
            claimed = utc(r.claimed_at) if r.claimed_at else None
            closed = utc(r.closed_at) if r.closed_at else None
            claim_within, resolve_within = handoff.sla(r.queue, r.priority)
            if r.status == "open":
                m.open += 1
            elif r.status == "claimed":
                m.claimed += 1
            elif r.status == "resolved":
                m.resolved_by_human += 1
                outcome = r.outcome or "resolved"
                m.outcomes[outcome] = m.outcomes.get(outcome, 0) + 1
            elif r.status == "returned":
                m.returned_to_bot += 1
            first_touch = claimed or closed
            if first_touch is not None:
                claims.setdefault(r.queue, []).append((first_touch - created).total_seconds())
                if first_touch <= created + claim_within:
                    m.claim_sla_met += 1
                else:
                    m.claim_sla_missed += 1
            elif now > created + claim_within:
                m.breached_now += 1
            if closed is not None:
                resolves.setdefault(r.queue, []).append((closed - created).total_seconds())
                if closed <= created + resolve_within:
                    m.resolve_sla_met += 1
                else:
                    m.resolve_sla_missed += 1
            elif first_touch is not None and now > created + resolve_within:
                m.breached_now += 1
        total = QueueMetrics(queue="all")
        for q, m in by_queue.items():
            m.time_to_claim = _timing(claims.get(q, []))
            m.time_to_resolve = _timing(resolves.get(q, []))
            for name in ("created", "open", "claimed", "resolved_by_human", "returned_to_bot",
                         "claim_sla_met", "claim_sla_missed", "resolve_sla_met",
                         "resolve_sla_missed", "breached_now"):
                setattr(total, name, getattr(total, name) + getattr(m, name))
            for k, v in m.outcomes.items():
                total.outcomes[k] = total.outcomes.get(k, 0) + v
        total.time_to_claim = _timing([x for v in claims.values() for x in v])
        total.time_to_resolve = _timing([x for v in resolves.values() for x in v])
        return HandoffMetrics(
            since=since, total=total,
            queues=[by_queue[q] for q in sorted(by_queue)],
        )

    # --- changing ----------------------------------------------------------------------------

    def claim(self, agent: Agent, handoff_id: str) -> HandoffView:
        """Take an open handoff. Of two agents claiming at once exactly one wins; claiming
        what you already hold returns it unchanged."""
        now = self.clock.now()
        h = db.handoffs
        with self.engine.begin() as conn:
            row = self._row(conn, agent, handoff_id)
            won = conn.execute(
                update(h).where(h.c.id == handoff_id, h.c.status == "open")
                .values(status="claimed", assignee=agent.name, claimed_at=now, updated_at=now)
            ).rowcount == 1
            if won:
                self.store.add_handoff_event(conn, handoff_id, "claimed", agent.name, {},
                                             now=now)
        if not won:
            with self.engine.connect() as conn:
                row = self._row(conn, agent, handoff_id)
            if row.status == "claimed" and row.assignee == agent.name:
                return self.view(agent, handoff_id)
            raise Conflict(self._state_text(row, now))
        self._changed()
        return self.view(agent, handoff_id)

    def reply(
        self, agent: Agent, handoff_id: str, text: str, *, idempotency_key: str | None = None
    ) -> HandoffEvent:
        """Answer the customer on the channel they last wrote on, through the outbox (the relay
        delivers it like any message). The policy still decides in code: consent, the channel
        being up, the content rules. A retry with the same ``idempotency_key`` sends nothing
        new and returns the first reply."""
        text = text.strip()
        if not text:
            raise Rejected("the reply is empty")
        if len(text) > MAX_TEXT:
            raise Rejected(f"the reply is {len(text)} characters; at most {MAX_TEXT}")
        with self.engine.connect() as conn:
            row = self._row(conn, agent, handoff_id)
            if idempotency_key and (seen := self._by_key(conn, handoff_id, idempotency_key)):
                return seen
        self._must_hold(row, agent, "reply")
        channel = self._reply_channel(row)
        if channel is None:
            raise Conflict("the customer has not written on any channel we can answer on")
        now = self.clock.now()
        check = recheck_later(
            self.policy.get(), self.stages, self.store,
            LaterSend(kind="person", action=SendMessage(channel=channel, text=text),
                      customer_id=row.customer_id, conversation_id=row.conversation_id,
                      is_reply=True, by_person=True, handoff=Store._handoff(row)),
            now,
        )
        verdict, action, profile = check.verdict, check.action, check.profile
        if profile is None:  # pragma: no cover - a handoff's customer always exists
            raise NotFound(f"customer {row.customer_id} not found")
        if not isinstance(action, SendMessage) or {"rewrite", "trim"} & set(
                verdict.modifications):
            raise Rejected(
                f"the policy did not let this reply go out on {channel}: "
                f"{', '.join(verdict.reason_codes)}"
                + (f" ({verdict.detail})" if verdict.detail else "")
            )
        message_id, outbox_id = self.ids("msg"), self.ids("out")
        address = profile.address_for(action.channel) or ""
        try:
            with self.engine.begin() as conn:
                current = self._row(conn, agent, handoff_id)
                self._must_hold(current, agent, "reply")
                conn.execute(insert(db.messages).values(
                    id=message_id, conversation_id=row.conversation_id,
                    customer_id=row.customer_id, direction="outbound", channel=action.channel,
                    text=action.text, author=f"human:{agent.name}", created_at=now,
                    turn_status=None,
                ))
                conn.execute(insert(db.outbox).values(
                    id=outbox_id, decision_id=None, message_id=message_id,
                    customer_id=row.customer_id, channel=action.channel, address=address,
                    text=action.text, purpose="service",
                    status="scheduled" if verdict.deliver_at else "pending", attempts=0,
                    created_at=now, idempotency_key=f"handoff:{handoff_id}:{message_id}",
                    not_before=verdict.deliver_at, is_reply=True,
                    next_attempt_at=verdict.deliver_at or now,
                    meta={HANDOFF_ID: handoff_id, "author": agent.name},
                ))
                event_id = self.store.add_handoff_event(
                    conn, handoff_id, "reply", agent.name,
                    {"text": action.text, "channel": action.channel, "message_id": message_id,
                     "outbox_id": outbox_id, "reason_codes": verdict.reason_codes},
                    now=now, idempotency_key=idempotency_key,
                )
                conn.execute(update(db.conversations)
                             .where(db.conversations.c.id == row.conversation_id)
                             .values(updated_at=now))
        except IntegrityError as exc:
            return self._raced(handoff_id, idempotency_key, exc)
        if self.memory is not None:
            self.memory.add([MemoryRecord(
                id=message_id, customer_id=row.customer_id, conversation_id=row.conversation_id,
                channel=action.channel, direction="outbound", text=action.text, created_at=now,
            )])
        self._changed(jobs=True)
        return self._event(event_id)

    def note(
        self, agent: Agent, handoff_id: str, text: str, *, idempotency_key: str | None = None
    ) -> HandoffEvent:
        """An internal note: never sent to the customer; the bot reads it when it takes the
        conversation back."""
        text = mask(text.strip(), self.policy.get().privacy)  # a card number is never kept
        if not text:
            raise Rejected("the note is empty")
        if len(text) > MAX_TEXT:
            raise Rejected(f"the note is {len(text)} characters; at most {MAX_TEXT}")
        now = self.clock.now()
        try:
            with self.engine.begin() as conn:
                self._row(conn, agent, handoff_id)
                if idempotency_key and (seen := self._by_key(conn, handoff_id, idempotency_key)):
                    return seen
                event_id = self.store.add_handoff_event(
                    conn, handoff_id, "note", agent.name, {"text": text}, now=now,
                    idempotency_key=idempotency_key,
                )
        except IntegrityError as exc:
            return self._raced(handoff_id, idempotency_key, exc)
        self._changed()
        return self._event(event_id)

    def resolve(
        self, agent: Agent, handoff_id: str, outcome: str, *, note: str | None = None
    ) -> HandoffView:
        """Close the handoff with an outcome; the bot owns the conversation again."""
        outcomes = self.outcomes()
        if outcome not in outcomes:
            raise Rejected(f"unknown outcome {outcome!r}; one of: {', '.join(outcomes)}")
        return self._close(agent, handoff_id, "resolved", outcome=outcome, note=note)

    def return_to_bot(
        self, agent: Agent, handoff_id: str, *, note: str | None = None
    ) -> HandoffView:
        """Give the conversation back to the bot, claimed or not (the bot can handle it)."""
        return self._close(agent, handoff_id, "returned", outcome=None, note=note)

    def record_customer_message(self, message: Message) -> str | None:
        """A customer wrote while people own the conversation: it goes to the handoff's
        timeline (and webhook) so the person working it sees it. Returns the handoff id."""
        handoff = self.store.active_handoff(message.conversation_id)
        if handoff is None:
            return None
        now = self.clock.now()
        try:
            with self.engine.begin() as conn:
                self.store.add_handoff_event(
                    conn, handoff.id, "customer_message", "customer",
                    {"message_id": message.id, "channel": message.channel,
                     "text": message.text[:MAX_TEXT]},
                    now=now, idempotency_key=f"message:{message.id}",
                )
        except IntegrityError:
            return handoff.id  # recorded already (a redelivered webhook)
        self._changed()
        return handoff.id

    def check_slas(self) -> int:
        """Record ``sla_breached`` once per timer for each active handoff past its claim or
        resolve SLA (and its webhook). Safe from several workers: the event's idempotency key
        (``sla:claim`` / ``sla:resolve``) makes it once. Returns how many it recorded."""
        h, e = db.handoffs, db.handoff_events
        now = self.clock.now()
        policy = self.policy.get().handoff
        recorded = 0
        with self.engine.connect() as conn:
            rows = conn.execute(select(h).where(h.c.status.in_(ACTIVE))).all()
            seen = {(r.handoff_id, r.idempotency_key) for r in conn.execute(
                select(e.c.handoff_id, e.c.idempotency_key).where(
                    e.c.kind == "sla_breached",
                    e.c.handoff_id.in_([r.id for r in rows]))
            ).all()} if rows else set()
        for r in rows:
            claim_within, resolve_within = policy.sla(r.queue, r.priority)
            created = utc(r.created_at)
            due = []
            if r.status == "open" and now > created + claim_within:
                due.append(("claim", created + claim_within))
            if now > created + resolve_within:
                due.append(("resolve", created + resolve_within))
            for timer, at in due:
                key = f"sla:{timer}"
                if (r.id, key) in seen:
                    continue
                try:
                    with self.engine.begin() as conn:
                        self.store.add_handoff_event(
                            conn, r.id, "sla_breached", "system",
                            {"timer": timer, "due_at": at.isoformat(), "queue": r.queue,
                             "priority": r.priority, "assignee": r.assignee},
                            now=now, idempotency_key=key,
                        )
                    recorded += 1
                except IntegrityError:
                    continue  # another worker recorded it
        if recorded:
            self._changed()
        return recorded

    # --- internals ---------------------------------------------------------------------------

    def _close(
        self, agent: Agent, handoff_id: str, status: HandoffStatus, *, outcome: str | None,
        note: str | None,
    ) -> HandoffView:
        now = self.clock.now()
        h = db.handoffs
        note = mask((note or "").strip(), self.policy.get().privacy) or None
        if note and len(note) > MAX_TEXT:
            raise Rejected(f"the note is {len(note)} characters; at most {MAX_TEXT}")
        with self.engine.begin() as conn:
            row = self._row(conn, agent, handoff_id)
            condition = and_(h.c.id == handoff_id, h.c.status == "claimed",
                             h.c.assignee == agent.name)
            if status == "returned":
                condition = and_(h.c.id == handoff_id, or_(
                    h.c.status == "open",
                    and_(h.c.status == "claimed", h.c.assignee == agent.name),
                ))
            won = conn.execute(
                update(h).where(condition).values(
                    status=status, closed_at=now, closed_by=agent.name, outcome=outcome,
                    updated_at=now,
                )
            ).rowcount == 1
            if won:
                if note:
                    self.store.add_handoff_event(conn, handoff_id, "note", agent.name,
                                                 {"text": note}, now=now)
                body: dict[str, Any] = {"outcome": outcome} if outcome else {}
                self.store.add_handoff_event(conn, handoff_id, status, agent.name, body,
                                             now=now)
                still_open = conn.execute(
                    select(func.count()).select_from(h).where(
                        h.c.conversation_id == row.conversation_id, h.c.status.in_(ACTIVE))
                ).scalar_one()
                if not still_open:
                    conn.execute(update(db.conversations)
                                 .where(db.conversations.c.id == row.conversation_id)
                                 .values(owner="bot", updated_at=now))
        if not won:
            with self.engine.connect() as conn:
                row = self._row(conn, agent, handoff_id)
            if row.status == status and row.closed_by == agent.name and row.outcome == outcome:
                return self.view(agent, handoff_id)  # the same change again: nothing to do
            if row.status == "open" and status == "resolved":
                raise Conflict(f"handoff {handoff_id} is not claimed yet: claim it first")
            raise Conflict(self._state_text(row, now))
        self._changed()
        return self.view(agent, handoff_id)

    def _row(self, conn: Connection, agent: Agent, handoff_id: str) -> Any:
        row = conn.execute(
            select(db.handoffs, db.customers.c.name.label("customer_name"))
            .join(db.customers, db.customers.c.id == db.handoffs.c.customer_id)
            .where(db.handoffs.c.id == handoff_id)
        ).first()
        if row is None:
            raise NotFound(f"no handoff {handoff_id}")
        if not agent.covers(row.queue):
            raise Forbidden(f"your key does not cover the queue {row.queue!r}")
        return row

    @staticmethod
    def _must_hold(row: Any, agent: Agent, what: str) -> None:
        if row.status == "claimed" and row.assignee == agent.name:
            return
        if row.status == "open":
            raise Conflict(f"handoff {row.id} is not claimed yet: claim it before you {what}")
        if row.status == "claimed":
            raise Conflict(f"handoff {row.id} is claimed by {row.assignee}")
        raise Conflict(f"handoff {row.id} is {row.status}: reopen it by escalating again")

    def _state_text(self, row: Any, now: datetime) -> str:
        if row.status == "claimed":
            ago = human_duration((now - utc(row.claimed_at)).total_seconds())
            return f"handoff {row.id} is already claimed by {row.assignee} ({ago} ago)"
        if row.status in ("resolved", "returned"):
            by = f" by {row.closed_by}" if row.closed_by else ""
            return f"handoff {row.id} is already {row.status}{by}"
        return f"handoff {row.id} is {row.status}"

    def _reply_channel(self, row: Any) -> Channel | None:
        """Where the customer last wrote: this conversation first, then anywhere."""
        m = db.messages
        with self.engine.connect() as conn:
            for where in (m.c.conversation_id == row.conversation_id,
                          m.c.customer_id == row.customer_id):
                channel = conn.execute(
                    select(m.c.channel).where(where, m.c.direction == "inbound")
                    .order_by(m.c.created_at.desc(), m.c.id.desc()).limit(1)
                ).scalar()
                if channel:
                    return channel  # type: ignore[no-any-return]
        return None

    def _view(self, conn: Connection, row: Any) -> HandoffView:
        return self._views(conn, [row])[0]

    def _views(self, conn: Connection, rows: Sequence[Any]) -> List[HandoffView]:
        """Views of ``rows`` in four queries whatever their number (the console polls this)."""
        if not rows:
            return []
        ids = [r.id for r in rows]
        m, e = db.messages, db.handoff_events
        # the customer's last channel per conversation: the newest inbound message's
        newest = (
            select(m.c.conversation_id, m.c.channel,
                   func.row_number().over(
                       partition_by=m.c.conversation_id,
                       order_by=(m.c.created_at.desc(), m.c.id.desc())).label("n"))
            .where(m.c.conversation_id.in_({r.conversation_id for r in rows}),
                   m.c.direction == "inbound")
            .subquery()
        )
        channels = dict(conn.execute(
            select(newest.c.conversation_id, newest.c.channel).where(newest.c.n == 1)
        ).all())
        stamps: dict[str, dict[str, List[datetime]]] = {}
        for hid, kind, at in conn.execute(
            select(e.c.handoff_id, e.c.kind, e.c.created_at).where(
                e.c.handoff_id.in_(ids), e.c.kind.in_(("reply", "customer_message")))
        ).all():
            stamps.setdefault(hid, {}).setdefault(kind, []).append(utc(at))
        routing: dict[str, set[str]] = {}
        for decision_id, code in conn.execute(
            select(db.decision_reasons.c.decision_id, db.decision_reasons.c.code).where(
                db.decision_reasons.c.decision_id.in_(
                    [r.decision_id for r in rows if r.decision_id]),
                db.decision_reasons.c.code.like("escalate_to_human:%"))
        ).all():
            routing.setdefault(decision_id, set()).add(code.split(":", 1)[1])
        return [
            self._build_view(row, channels.get(row.conversation_id), stamps.get(row.id, {}),
                             routing.get(row.decision_id, set()))
            for row in rows
        ]

    def _build_view(self, row: Any, channel: str | None, stamps: dict[str, List[datetime]],
                    routing: set[str]) -> HandoffView:
        now = self.clock.now()
        handoff = self.policy.get().handoff
        claim_within, resolve_within = handoff.sla(row.queue, row.priority)
        created = utc(row.created_at)
        claimed = utc(row.claimed_at) if row.claimed_at else None
        closed = utc(row.closed_at) if row.closed_at else None
        since = max(stamps.get("reply", [created]))
        unread = sum(1 for at in stamps.get("customer_message", []) if at >= since) \
            if row.status in ACTIVE else 0
        return HandoffView(
            id=row.id, conversation_id=row.conversation_id, customer_id=row.customer_id,
            customer_name=row.customer_name, queue=row.queue, priority=row.priority,
            status=row.status, reason=row.reason, summary=row.summary, channel=channel,
            assignee=row.assignee, outcome=row.outcome, created_at=created,
            claimed_at=claimed, closed_at=closed,
            claim_sla=_sla("claim", created, claim_within, claimed or closed, now,
                           handoff.due_soon, "claimed" if claimed else "closed"),
            resolve_sla=_sla("resolve", created, resolve_within, closed, now,
                             handoff.due_soon, "resolved" if row.status == "resolved"
                             else "returned"),
            unread=unread,
            routing=sorted(routing),
        )

    def _events(self, conn: Connection, handoff_id: str) -> List[HandoffEvent]:
        rows = conn.execute(
            select(db.handoff_events).where(db.handoff_events.c.handoff_id == handoff_id)
            .order_by(db.handoff_events.c.created_at, db.handoff_events.c.id)
        ).all()
        return [_event(r) for r in rows]

    def _event(self, event_id: str) -> HandoffEvent:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(db.handoff_events).where(db.handoff_events.c.id == event_id)
            ).one()
        return _event(row)

    def _raced(self, handoff_id: str, key: str | None, exc: IntegrityError) -> HandoffEvent:
        """A concurrent retry with the same idempotency key committed first: its event is the
        answer. Any other integrity error is raised again."""
        with self.engine.connect() as conn:
            seen = self._by_key(conn, handoff_id, key) if key else None
        if seen is None:
            raise exc
        return seen

    @staticmethod
    def _by_key(conn: Connection, handoff_id: str, key: str) -> HandoffEvent | None:
        row = conn.execute(
            select(db.handoff_events).where(db.handoff_events.c.handoff_id == handoff_id,
                                            db.handoff_events.c.idempotency_key == key)
        ).first()
        return _event(row) if row else None

    def _changed(self, *, jobs: bool = False) -> None:
        """Wake an idle worker when there is work for it: a reply to deliver, webhooks to send
        (the console and API read the database; nothing else waits on a handoff)."""
        if self.hub is not None and (jobs or self.store.handoff_webhooks):
            self.hub.notify(JOBS_KEY)


class Handback(BaseModel):
    """A conversation people handed back: what the bot reads before it answers again."""

    handoff_id: str
    status: str
    outcome: str | None
    by: str
    closed_at: datetime
    notes: list[str]
    #: What the person told the customer (the bot must not say it again).
    replies: list[str]


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
    events = [_event(r) for r in rows]
    return Handback(
        handoff_id=row.id, status=row.status, outcome=row.outcome,
        by=row.closed_by or row.assignee or "",
        closed_at=utc(row.closed_at or row.updated_at),
        notes=[str(e.body.get("text", "")) for e in events if e.kind == "note"],
        replies=[str(e.body.get("text", "")) for e in events if e.kind == "reply"],
    )


def _event(row: Any) -> HandoffEvent:
    return HandoffEvent(
        id=row.id, handoff_id=row.handoff_id, kind=row.kind, actor=row.actor,
        body=dict(row.body or {}), created_at=utc(row.created_at),
    )


def _sla(
    what: str, created: datetime, within: timedelta, done: datetime | None, now: datetime,
    due_soon: float, done_word: str,
) -> Sla:
    due = created + within
    if done is not None:
        took = (done - created).total_seconds()
        return Sla(due_at=due, state="met" if done <= due else "missed", seconds=took,
                   label=f"{done_word} in {human_duration(took)}")
    left = (due - now).total_seconds()
    if left < 0:
        return Sla(due_at=due, state="breached", seconds=left,
                   label=f"{what} overdue {human_duration(left)}")
    state: SlaState = "due_soon" if left < within.total_seconds() * due_soon else "ok"
    return Sla(due_at=due, state=state, seconds=left,
               label=f"{what} in {human_duration(left)}")
