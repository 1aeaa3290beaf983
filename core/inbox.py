"""The human inbox's values: the handoff as people see it, its timeline, its packet, its SLA
timers and metrics, the agent working it, and the handoff row the store reads back; and the
pure arithmetic on them (an SLA timer from its times, the metrics' tallies and percentiles,
durations for badges).

Plain pydantic models, dataclasses and functions, no storage and no policy (the SLA windows
are passed in): ``memory.handoffs`` reads and writes them, ``journey.handoffs`` (the inbox
service) decides with them, ``api`` shows them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from core.domain import Decision, Handoff, Message, Priority
from core.stats import percentile

HandoffStatus = Literal["open", "claimed", "resolved", "returned"]
EventKind = Literal[
    "created", "claimed", "reply", "note", "customer_message", "resolved", "returned",
    "sla_breached",
]
SlaState = Literal["ok", "due_soon", "breached", "met", "missed"]

ACTIVE: tuple[HandoffStatus, ...] = ("open", "claimed")
CLOSED: tuple[HandoffStatus, ...] = ("resolved", "returned")
STATUSES = ("open", "claimed", "resolved", "returned", "active", "closed")


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


@dataclass(frozen=True)
class HandoffRecord:
    """A handoff's row as stored (times UTC-aware), with its customer's name when read for a
    view. What the inbox service decides on; the store's rows never leave ``memory``."""

    id: str
    conversation_id: str
    customer_id: str
    decision_id: str | None
    queue: str
    reason: str
    summary: str
    priority: Priority
    status: HandoffStatus
    created_at: datetime
    updated_at: datetime
    assignee: str | None = None
    claimed_at: datetime | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    outcome: str | None = None
    customer_name: str | None = None

    def handoff(self) -> Handoff:
        """The domain's handoff (what the policy reads)."""
        return Handoff(
            id=self.id, conversation_id=self.conversation_id, customer_id=self.customer_id,
            queue=self.queue, reason=self.reason, summary=self.summary,
            priority=self.priority,
            status=self.status, decision_id=self.decision_id, created_at=self.created_at,
        )


@dataclass(frozen=True)
class HandoffFacts:
    """What a view needs besides the row: the customer's last channel in the conversation,
    when people replied and the customer wrote, and the routing rules that escalated."""

    channel: str | None = None
    replies: list[datetime] = field(default_factory=list)
    customer_messages: list[datetime] = field(default_factory=list)
    routing: frozenset[str] = frozenset()


# --- SLA arithmetic --------------------------------------------------------------------------

#: (claim within, resolve within) for a handoff in a queue at a priority (the policy's)
SlaWindows = Callable[[str, str], tuple[timedelta, timedelta]]


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


def sla_timer(
    what: str, created: datetime, within: timedelta, done: datetime | None, now: datetime,
    due_soon: float, done_word: str,
) -> Sla:
    """The timer ``what`` (claim, resolve) of a handoff created at ``created``: met or missed
    once ``done``, else ok, due soon (less than ``due_soon`` of ``within`` left) or breached."""
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


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def timing(values: list[float]) -> Timing:
    return Timing(n=len(values), median_s=_rounded(percentile(values, 0.5)),
                  p90_s=_rounded(percentile(values, 0.9)))


def tally_metrics(
    rows: Iterable[HandoffRecord], windows: SlaWindows, *, now: datetime,
    since: datetime | None,
) -> HandoffMetrics:
    """Per queue and in total: handoffs created, open and closed, how long claims and
    resolutions took, SLAs met and missed (by ``windows``), breached now, outcomes."""
    by_queue: dict[str, QueueMetrics] = {}
    claims: dict[str, list[float]] = {}
    resolves: dict[str, list[float]] = {}
    for r in rows:
        m = by_queue.setdefault(r.queue, QueueMetrics(queue=r.queue))
        m.created += 1
        created, claimed, closed = r.created_at, r.claimed_at, r.closed_at
        claim_within, resolve_within = windows(r.queue, r.priority)
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
        m.time_to_claim = timing(claims.get(q, []))
        m.time_to_resolve = timing(resolves.get(q, []))
        for name in ("created", "open", "claimed", "resolved_by_human", "returned_to_bot",
                     "claim_sla_met", "claim_sla_missed", "resolve_sla_met",
                     "resolve_sla_missed", "breached_now"):
            setattr(total, name, getattr(total, name) + getattr(m, name))
        for k, v in m.outcomes.items():
            total.outcomes[k] = total.outcomes.get(k, 0) + v
    total.time_to_claim = timing([x for v in claims.values() for x in v])
    total.time_to_resolve = timing([x for v in resolves.values() for x in v])
    return HandoffMetrics(
        since=since, total=total,
        queues=[by_queue[q] for q in sorted(by_queue)],
    )
