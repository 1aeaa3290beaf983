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

Errors (``core.errors``; ``api/errors.py`` maps them to HTTP)::

    NotFound     no such handoff (or not in the agent's queues)
    Forbidden    the agent's key does not cover the queue
    Conflict     the handoff is not in a state that allows this (claimed by another…)
    Rejected     the policy refused the reply (consent, channel, content)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from core.domain import CustomerProfile, Message, SendMessage
from core.effects import OutboundMessage
from core.errors import Conflict, Forbidden, NotFound, Rejected
from core.hub import JOBS_KEY, Hub
from core.identity import default_region
from core.inbox import (
    ACTIVE,
    CLOSED,
    STATUSES,
    Agent,
    EventKind,
    HandoffEvent,
    HandoffFacts,
    HandoffMetrics,
    HandoffPacket,
    HandoffRecord,
    HandoffStatus,
    HandoffView,
    ProfileHighlights,
    QueueMetrics,
    Sla,
    SlaState,
    Timing,
    human_duration,
    sla_timer,
    tally_metrics,
)
from memory.handoffs import Guard
from memory.store import Store
from memory.vector import MemoryRecord, VectorMemory
from policy import grounding
from policy.later import HANDOFF_ID, LaterSend, recheck_later
from policy.loader import PolicyProvider
from policy.privacy import mask

#: the inbox's values live in ``core.inbox``; ``api`` and the CLI import them from here too
__all__ = [
    "ACTIVE", "MAX_TEXT", "PACKET_DECISIONS", "PACKET_MESSAGES", "STATUSES", "Agent",
    "EventKind", "HandoffEvent", "HandoffMetrics", "HandoffPacket", "HandoffService",
    "HandoffStatus", "HandoffView", "ProfileHighlights", "QueueMetrics", "Sla", "SlaState",
    "Timing", "human_duration",
]

#: ``list`` is also a method of HandoffService
List = list
PACKET_MESSAGES = 20
PACKET_DECISIONS = 10
MAX_TEXT = 4000


class HandoffService:
    """The inbox: list, read and change handoffs. Used by the JSON API and the console.

    It decides (who may see and change what, the state machine above, the policy's say on a
    reply, SLAs); every read and write is the store's (``store.inbox``,
    :class:`memory.handoffs.HandoffRepository`), each change in one transaction."""

    def __init__(
        self,
        store: Store,
        policy: PolicyProvider,
        lifecycle_stages: Sequence[str],
        *,
        hub: Hub | None = None,
        memory: VectorMemory | None = None,
        facts: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.repo = store.inbox
        self.clock = store.clock
        self.ids = store.ids
        self.policy = policy
        self.stages = tuple(lifecycle_stages)
        self.hub = hub
        self.memory = memory
        #: the company's facts (the knowledge base's answers): a person's reply that states
        #: something else gets a warning (``grounding_warnings``), not a rewrite
        self.facts = tuple(facts)

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
        queues: Sequence[str] | None = None
        if queue:
            if not agent.covers(queue):
                raise Forbidden(f"your key does not cover the queue {queue!r}")
            queues = [queue]
        elif agent.queues is not None:
            queues = sorted(agent.queues)
        groups: dict[str, Sequence[str]] = {"active": ACTIVE, "closed": CLOSED}
        statuses = groups.get(status, [status]) if status else None
        return self._views(self.repo.query(queues=queues, statuses=statuses,
                                           customer_id=customer_id, limit=limit))

    def view(self, agent: Agent, handoff_id: str) -> HandoffView:
        return self._view(self._row(agent, handoff_id))

    def events(self, agent: Agent, handoff_id: str) -> List[HandoffEvent]:
        self._row(agent, handoff_id)
        return self.repo.events(handoff_id)

    def packet(self, agent: Agent, handoff_id: str) -> HandoffPacket:
        """The handoff with its context: the customer's profile, their last messages on every
        channel (any conversation), the decision that escalated and the recent decisions."""
        row = self._row(agent, handoff_id)
        view = self._view(row)
        events = self.repo.events(handoff_id)
        decisions = self.repo.recent_decisions(row.customer_id, PACKET_DECISIONS)
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
        event = self.repo.event(event_id)
        return event, self.view(Agent(name="webhook"), event.handoff_id)

    def metrics(
        self, agent: Agent | None = None, *, since: datetime | None = None
    ) -> HandoffMetrics:
        """Per queue: handoffs created, how long claims and resolutions took (median, p90),
        SLAs met and missed, resolved by a person vs returned to the bot, outcomes. With an
        ``agent`` whose key covers some queues, only those queues are counted."""
        queues = None if agent is None or agent.queues is None else sorted(agent.queues)
        return tally_metrics(self.repo.for_metrics(since=since, queues=queues),
                             self.policy.get().handoff.sla, now=self.clock.now(), since=since)

    # --- changing ----------------------------------------------------------------------------

    def claim(self, agent: Agent, handoff_id: str) -> HandoffView:
        """Take an open handoff. Of two agents claiming at once exactly one wins; claiming
        what you already hold returns it unchanged."""
        now = self.clock.now()
        if not self.repo.claim(handoff_id, agent.name, now=now,
                               guard=self._guard(agent, handoff_id)):
            row = self._row(agent, handoff_id)
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
        row = self._row(agent, handoff_id)
        if idempotency_key and (seen := self.repo.event_by_key(handoff_id, idempotency_key)):
            return seen
        self._must_hold(row, agent, "reply")
        channel = self.repo.last_channel(row.conversation_id, row.customer_id)
        if channel is None:
            raise Conflict("the customer has not written on any channel we can answer on")
        now = self.clock.now()
        check = recheck_later(
            self.policy.get(), self.stages, self.store,
            LaterSend(kind="person", action=SendMessage(channel=channel, text=text),
                      customer_id=row.customer_id, conversation_id=row.conversation_id,
                      is_reply=True, by_person=True, handoff=row.handoff()),
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
        warnings = self._ungrounded(action.text, profile)
        message_id, outbox_id = self.ids("msg"), self.ids("out")
        out = OutboundMessage(
            message_id=message_id, outbox_id=outbox_id, channel=action.channel,
            address=profile.address_for(action.channel) or "", text=action.text,
            purpose="service", status="scheduled" if verdict.deliver_at else "pending",
            not_before=verdict.deliver_at, is_reply=True,
            meta={HANDOFF_ID: handoff_id, "author": agent.name},
        )
        event, written = self.repo.reply(
            row, out, by=agent.name,
            body={"text": action.text, "channel": action.channel, "message_id": message_id,
                  "outbox_id": outbox_id, "reason_codes": verdict.reason_codes,
                  "grounding_warnings": [*warnings]},
            now=now, key=idempotency_key, guard=self._guard(agent, handoff_id, hold="reply"),
        )
        if not written:
            return event  # a concurrent retry with the same key sent it
        if self.memory is not None:
            self.memory.add([MemoryRecord(
                id=message_id, customer_id=row.customer_id, conversation_id=row.conversation_id,
                channel=action.channel, direction="outbound", text=action.text, created_at=now,
            )])
        self._changed(jobs=True)
        return event

    def _ungrounded(self, text: str, profile: CustomerProfile) -> tuple[str, ...]:
        """The claims of a person's reply that are not in the company's facts, the profile or
        the customer's conversation: shown to them, never rewritten (they may know better)."""
        said = self.store.messages(customer_id=profile.id, limit=50)
        sources = grounding.conversation_sources(
            profile, company_said=(m.text for m in said if m.direction == "outbound"),
            customer_said=(m.text for m in said if m.direction == "inbound"),
            known=self.facts, region=default_region())
        missing = grounding.unsupported(text, sources, default_region(),
                                        self.policy.get().content.allowed_contacts)
        return tuple(f"{claim} is not in the knowledge base, the profile or the conversation"
                     for claim in missing)

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
        event, written = self.repo.add_event(
            handoff_id, "note", agent.name, {"text": text}, now=self.clock.now(),
            key=idempotency_key, guard=self._guard(agent, handoff_id),
        )
        if written:
            self._changed()
        return event

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
        if not self.repo.record_once(
            handoff.id, "customer_message", "customer",
            {"message_id": message.id, "channel": message.channel,
             "text": message.text[:MAX_TEXT]},
            now=self.clock.now(), key=f"message:{message.id}",
        ):
            return handoff.id  # recorded already (a redelivered webhook)
        self._changed()
        return handoff.id

    def check_slas(self) -> int:
        """Record ``sla_breached`` once per timer for each active handoff past its claim or
        resolve SLA (and its webhook). Safe from several workers: the event's idempotency key
        (``sla:claim`` / ``sla:resolve``) makes it once. Returns how many it recorded."""
        now = self.clock.now()
        policy = self.policy.get().handoff
        recorded = 0
        rows, seen = self.repo.sla_watch()
        for r in rows:
            claim_within, resolve_within = policy.sla(r.queue, r.priority)
            created = r.created_at
            due = []
            if r.status == "open" and now > created + claim_within:
                due.append(("claim", created + claim_within))
            if now > created + resolve_within:
                due.append(("resolve", created + resolve_within))
            for timer, at in due:
                key = f"sla:{timer}"
                if (r.id, key) in seen:
                    continue
                if self.repo.record_once(
                    r.id, "sla_breached", "system",
                    {"timer": timer, "due_at": at.isoformat(), "queue": r.queue,
                     "priority": r.priority, "assignee": r.assignee},
                    now=now, key=key,
                ):
                    recorded += 1
                # else: another worker recorded it
        if recorded:
            self._changed()
        return recorded

    # --- internals ---------------------------------------------------------------------------

    def _close(
        self, agent: Agent, handoff_id: str, status: HandoffStatus, *, outcome: str | None,
        note: str | None,
    ) -> HandoffView:
        now = self.clock.now()
        note = mask((note or "").strip(), self.policy.get().privacy) or None
        if note and len(note) > MAX_TEXT:
            raise Rejected(f"the note is {len(note)} characters; at most {MAX_TEXT}")
        # resolving needs the agent to hold the handoff; returning it to the bot does not
        won = self.repo.close(handoff_id, status, by=agent.name, outcome=outcome, note=note,
                              from_open=status == "returned", now=now,
                              guard=self._guard(agent, handoff_id))
        if not won:
            row = self._row(agent, handoff_id)
            if row.status == status and row.closed_by == agent.name and row.outcome == outcome:
                return self.view(agent, handoff_id)  # the same change again: nothing to do
            if row.status == "open" and status == "resolved":
                raise Conflict(f"handoff {handoff_id} is not claimed yet: claim it first")
            raise Conflict(self._state_text(row, now))
        self._changed()
        return self.view(agent, handoff_id)

    def _guard(self, agent: Agent, handoff_id: str, *, hold: str | None = None) -> Guard:
        """The check a change runs inside its transaction: the handoff exists and the agent's
        key covers its queue (with ``hold``: and the agent holds it, to ``hold``)."""

        def check(row: HandoffRecord | None) -> HandoffRecord:
            if row is None:
                raise NotFound(f"no handoff {handoff_id}")
            if not agent.covers(row.queue):
                raise Forbidden(f"your key does not cover the queue {row.queue!r}")
            if hold is not None:
                self._must_hold(row, agent, hold)
            return row

        return check

    def _row(self, agent: Agent, handoff_id: str) -> HandoffRecord:
        return self._guard(agent, handoff_id)(self.repo.find(handoff_id))

    @staticmethod
    def _must_hold(row: HandoffRecord, agent: Agent, what: str) -> None:
        if row.status == "claimed" and row.assignee == agent.name:
            return
        if row.status == "open":
            raise Conflict(f"handoff {row.id} is not claimed yet: claim it before you {what}")
        if row.status == "claimed":
            raise Conflict(f"handoff {row.id} is claimed by {row.assignee}")
        raise Conflict(f"handoff {row.id} is {row.status}: reopen it by escalating again")

    def _state_text(self, row: HandoffRecord, now: datetime) -> str:
        if row.status == "claimed":
            ago = human_duration((now - (row.claimed_at or now)).total_seconds())
            return f"handoff {row.id} is already claimed by {row.assignee} ({ago} ago)"
        if row.status in ("resolved", "returned"):
            by = f" by {row.closed_by}" if row.closed_by else ""
            return f"handoff {row.id} is already {row.status}{by}"
        return f"handoff {row.id} is {row.status}"

    def _view(self, row: HandoffRecord) -> HandoffView:
        return self._views([row])[0]

    def _views(self, rows: Sequence[HandoffRecord]) -> List[HandoffView]:
        """Views of ``rows``: their facts in three queries whatever their number."""
        return [self._build_view(row, facts)
                for row, facts in zip(rows, self.repo.facts(rows), strict=True)]

    def _build_view(self, row: HandoffRecord, facts: HandoffFacts) -> HandoffView:
        now = self.clock.now()
        handoff = self.policy.get().handoff
        claim_within, resolve_within = handoff.sla(row.queue, row.priority)
        created, claimed, closed = row.created_at, row.claimed_at, row.closed_at
        since = max(facts.replies or [created])
        unread = sum(1 for at in facts.customer_messages if at >= since) \
            if row.status in ACTIVE else 0
        return HandoffView(
            id=row.id, conversation_id=row.conversation_id, customer_id=row.customer_id,
            customer_name=row.customer_name, queue=row.queue, priority=row.priority,
            status=row.status, reason=row.reason, summary=row.summary, channel=facts.channel,
            assignee=row.assignee, outcome=row.outcome, created_at=created,
            claimed_at=claimed, closed_at=closed,
            claim_sla=sla_timer("claim", created, claim_within, claimed or closed, now,
                                handoff.due_soon, "claimed" if claimed else "closed"),
            resolve_sla=sla_timer("resolve", created, resolve_within, closed, now,
                                  handoff.due_soon, "resolved" if row.status == "resolved"
                                  else "returned"),
            unread=unread,
            routing=sorted(facts.routing),
        )

    def _changed(self, *, jobs: bool = False) -> None:
        """Wake an idle worker when there is work for it: a reply to deliver, webhooks to send
        (the console and API read the database; nothing else waits on a handoff)."""
        if self.hub is not None and (jobs or self.store.handoff_webhooks):
            self.hub.notify(JOBS_KEY)

