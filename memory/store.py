"""The relational store: profiles, conversations, messages, decisions, outbox, handoffs, CRM.

SQLAlchemy Core, the same code on SQLite and PostgreSQL. A turn's effects (the decision,
outbound messages and their outbox rows, CRM changes, handoffs) are written by
:meth:`Store.commit_turn` in one transaction, so a turn is recorded whole or not at all.

:class:`Store` is the one object callers hold; it delegates to a repository per
responsibility, all on the same engine, clock and ids::

    memory.profiles       Profiles            customers, identities, merges, events
    memory.conversations  Conversations       conversations, inbound messages, the transcript
    memory.decisions      Decisions           decisions and the turn transaction, the ledger,
                                              approvals, the outbox read model
    memory.crm            CrmRepository       profile changes, the activity log
    memory.bulk           BulkProfiles        many profiles at once: import batches, export pages
    memory.events         EventBatch          one ingested batch of events, set-based, in one
                                              transaction (``event_batch``)
    memory.erasure        ErasureRepository   one person's export, erasure (with its audit
                                              record), retention (``erasure``)
    memory.handoffs       HandoffRepository   handoffs for the bot and the inbox (``inbox``)
    memory.effects        EffectWriter        the one writer of a turn's effects and of
                                              handoff events, in the caller's transaction
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine

from core.clock import Clock, IdFactory, SystemClock, uuid_ids
from core.domain import (
    Approval,
    Channel,
    Conversation,
    CustomerProfile,
    Decision,
    Event,
    Handback,
    Handoff,
    Identity,
    Message,
)
from core.effects import Activity, CrmChange, InboundAccepted, LedgerEntry, TurnEffects
from core.errors import IdentityErased
from memory.bulk import BulkProfiles
from memory.conversations import Conversations
from memory.crm import CrmRepository
from memory.decisions import Decisions
from memory.effects import EffectWriter
from memory.enrolments import Enrolments
from memory.erasure import ErasureRepository
from memory.events import EventBatch, batch_transaction
from memory.handoffs import OPEN_HANDOFF, HandoffRepository, load_handback
from memory.jobs import Jobs
from memory.notifications import Notifications
from memory.outbox import OutboxQueue
from memory.profiles import Profiles
from memory.sync import SyncOut

__all__ = ["OPEN_HANDOFF", "Store"]


class Store:
    def __init__(
        self, engine: Engine, clock: Clock | None = None, ids: IdFactory = uuid_ids
    ) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()
        self.ids = ids
        self.jobs = Jobs(engine, self.clock, ids)
        self.enrolments = Enrolments(engine, self.clock, ids)
        self.outbox_queue = OutboxQueue(engine, self.clock)
        #: transactional notifications by idempotency key (``journey.notifications``)
        self.notifications = Notifications(engine, self.clock)
        self.effects = EffectWriter(self.clock, ids)
        self._profiles = Profiles(engine, self.clock, ids)
        #: imports and exports of many profiles at once (``journey customers import``)
        self.bulk = BulkProfiles(engine, self.clock, ids, self.effects.sync)
        self._conversations = Conversations(engine, self.clock, ids)
        self._decisions = Decisions(engine, self.clock, self.effects)
        self._crm = CrmRepository(engine, self.clock, self.effects.sync)
        self._profiles.sync = self.effects.sync
        #: the handoffs' tables as the inbox (``journey.handoffs.HandoffService``) uses them
        self.inbox = HandoffRepository(engine, self.clock, self.effects)
        #: called as ``(survivor_id, merged_id)`` after two profiles were merged
        self.on_merge: list[Callable[[str, str], None]] = self._profiles.on_merge
        self.on_merge.append(self.notifications.reassign)
        #: erasure, access and retention in SQL (``journey.erasure.ErasureService``)
        self.erasure = ErasureRepository(engine, self.clock, ids, self.effects.sync)

    @property
    def sync(self) -> SyncOut:
        """Queues the CRM sync-out webhooks (enable with ``store.sync.enabled = True``)."""
        return self.effects.sync

    @property
    def handoff_webhooks(self) -> bool:
        """Queue a signed webhook for every handoff event (``JOURNEY_HANDOFF_WEBHOOK_URL``)."""
        return self.effects.handoff_webhooks

    @handoff_webhooks.setter
    def handoff_webhooks(self, value: bool) -> None:
        self.effects.handoff_webhooks = value

    # --- customers and events (memory.profiles) --------------------------------------------

    def get_customer(self, customer_id: str) -> CustomerProfile | None:
        return self._profiles.get_customer(customer_id)

    def find_customer(self, identity: Identity) -> CustomerProfile | None:
        return self._profiles.find_customer(identity)

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
        return self._profiles.create_customer(
            identities, stage, name=name, timezone=timezone, attributes=attributes,
            consent=consent, customer_id=customer_id,
        )

    def live_customer_id(self, customer_id: str) -> str | None:
        return self._profiles.live_customer_id(customer_id)

    def resolve_customer(
        self,
        identities: Sequence[Identity],
        default_stage: str,
        timezone: str = "UTC",
        *,
        stages: Sequence[str] = (),
        on_erased: Literal["refuse", "recreate"] = "refuse",
    ) -> tuple[CustomerProfile, bool]:
        """The one profile ``identities`` belong to (created when none does). An identity
        whose person was erased, and that no live profile holds since, is refused
        (:class:`core.errors.IdentityErased`) unless ``on_erased="recreate"``: the person
        wrote to us again, so a fresh profile is made and the erasure's record notes it."""
        erased = self.erasure.erased(identities)
        if erased is not None and on_erased == "refuse":
            raise IdentityErased(erased[0].kind, erased[1])
        profile, created = self._profiles.resolve_customer(identities, default_stage, timezone,
                                                           stages=stages)
        if erased is not None:
            self.erasure.note_recreated(identities)
        return profile, created

    def erased_identity(self, identity: Identity) -> datetime | None:
        """When ``identity``'s person was erased, if no live profile holds it since."""
        erased = self.erasure.erased([identity])
        return None if erased is None else erased[1]

    def merge_customers(
        self,
        survivor_id: str,
        merged_id: str,
        *,
        reason: str,
        by: str,
        stages: Sequence[str] = (),
    ) -> dict[str, Any]:
        return self._profiles.merge_customers(survivor_id, merged_id, reason=reason, by=by,
                                              stages=stages)

    def merges(self, customer_id: str) -> list[dict[str, Any]]:
        return self._profiles.merges(customer_id)

    def normalise_identities(self, stages: Sequence[str] = ()) -> dict[str, int]:
        return self._profiles.normalise_identities(stages)

    def list_customers(self, limit: int = 100) -> list[CustomerProfile]:
        return self._profiles.list_customers(limit)

    def add_event(self, event: Event) -> bool:
        return self._profiles.add_event(event)

    def recent_events(self, customer_id: str, since: datetime, limit: int = 200) -> list[Event]:
        return self._profiles.recent_events(customer_id, since, limit)

    @contextmanager
    def event_batch(self) -> Iterator[EventBatch]:
        """One ingested batch's reads and writes in one transaction (``memory.events``)."""
        with batch_transaction(self.engine, self.ids, self.effects.sync) as batch:
            yield batch

    # --- CRM (memory.crm) ------------------------------------------------------------------

    def update_customer(
        self,
        customer_id: str,
        *,
        stage: str | None = None,
        attributes: dict[str, Any] | None = None,
        consent: dict[Channel, Any] | None = None,
        name: str | None = None,
    ) -> None:
        self._crm.update_customer(customer_id, stage=stage, attributes=attributes,
                                  consent=consent, name=name)

    def apply_profile_change(
        self, customer_id: str, change: CrmChange, activities: Sequence[Activity] = ()
    ) -> None:
        self._crm.apply_profile_change(customer_id, change, activities)

    def crm_activities(self, customer_id: str) -> list[dict[str, Any]]:
        return self._crm.crm_activities(customer_id)

    def update_profile(
        self, customer_id: str, changes: Sequence[CrmChange], *, name: str | None = None,
        timezone: str | None = None, locale: str | None = None,
        channel_preference: str | None = None,
    ) -> None:
        self._crm.update_profile(customer_id, changes, name=name, timezone=timezone,
                                 locale=locale, channel_preference=channel_preference)

    def consent_ledger(self, customer_id: str) -> list[dict[str, Any]]:
        return self._crm.consent_ledger(customer_id)

    # --- conversations and messages (memory.conversations) ---------------------------------

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        return self._conversations.get_conversation(conversation_id)

    def open_conversation(self, customer_id: str) -> Conversation:
        return self._conversations.open_conversation(customer_id)

    def list_conversations(self, customer_id: str) -> list[Conversation]:
        return self._conversations.list_conversations(customer_id)

    def accept_inbound(
        self,
        conversation: Conversation,
        channel: Channel,
        text: str,
        external_id: str | None,
        meta: dict[str, Any] | None = None,
    ) -> InboundAccepted:
        return self._conversations.accept_inbound(conversation, channel, text, external_id,
                                                  meta)

    def find_inbound(self, channel: Channel, external_id: str) -> InboundAccepted | None:
        return self._conversations.find_inbound(channel, external_id)

    def waiting_before(self, message: Message, since: datetime, limit: int = 50) -> list[Message]:
        return self._conversations.waiting_before(message, since, limit)

    def fail_turn(self, message_id: str) -> None:
        self._conversations.fail_turn(message_id)

    def messages(
        self,
        *,
        conversation_id: str | None = None,
        customer_id: str | None = None,
        limit: int | None = None,
    ) -> list[Message]:
        return self._conversations.messages(conversation_id=conversation_id,
                                            customer_id=customer_id, limit=limit)

    def last_inbound_meta(self, customer_id: str, channel: Channel) -> dict[str, Any] | None:
        return self._conversations.last_inbound_meta(customer_id, channel)

    def get_message(self, message_id: str) -> Message | None:
        return self._conversations.get_message(message_id)

    def outbound_since(
        self, customer_id: str, channel: Channel, after_message_id: str | None, limit: int = 100
    ) -> list[Message]:
        return self._conversations.outbound_since(customer_id, channel, after_message_id, limit)

    def inbound_count(self, channel: Channel, external_id: str) -> int:
        return self._conversations.inbound_count(channel, external_id)

    # --- handoffs (memory.handoffs) --------------------------------------------------------

    def active_handoff(self, conversation_id: str) -> Handoff | None:
        return self.inbox.active(conversation_id)

    def handback(self, conversation_id: str, since: datetime | None = None) -> Handback | None:
        """The last conversation people handed back (closed after ``since``)."""
        return load_handback(self.engine, conversation_id, since)

    def handoffs(self, customer_id: str | None = None) -> list[Handoff]:
        return self.inbox.of_customer(customer_id)

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
        return self.effects.handoff_event(conn, handoff_id, kind, actor, body, now=now,
                                          idempotency_key=idempotency_key)

    def set_handoff_status(self, handoff_id: str, status: str) -> None:
        self.inbox.set_status(handoff_id, status)

    # --- decisions, the turn transaction, approvals (memory.decisions) ---------------------

    def get_decision(self, decision_id: str) -> Decision | None:
        return self._decisions.get_decision(decision_id)

    def decision_for_job(self, job_id: str) -> Decision | None:
        return self._decisions.decision_for_job(job_id)

    def decision_for_inbound(self, message_id: str) -> Decision | None:
        return self._decisions.decision_for_inbound(message_id)

    def decisions(
        self,
        *,
        conversation_id: str | None = None,
        customer_id: str | None = None,
        limit: int = 200,
    ) -> list[Decision]:
        return self._decisions.decisions(conversation_id=conversation_id,
                                         customer_id=customer_id, limit=limit)

    def commit_turn(self, decision: Decision, effects: TurnEffects) -> Decision:
        return self._decisions.commit_turn(decision, effects)

    def ledger(self, customer_id: str, since: datetime) -> list[LedgerEntry]:
        return self._decisions.ledger(customer_id, since)

    def stalled_turns(self, conversation_id: str, limit: int = 10) -> int:
        return self._decisions.stalled_turns(conversation_id, limit)

    def search_decisions(
        self,
        *,
        customer_id: str | None = None,
        conversation_id: str | None = None,
        reason: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Decision]:
        return self._decisions.search_decisions(
            customer_id=customer_id, conversation_id=conversation_id, reason=reason,
            limit=limit, offset=offset,
        )

    def get_approval(self, approval_id: str) -> Approval | None:
        return self._decisions.get_approval(approval_id)

    def approvals(
        self, *, status: str | None = None, customer_id: str | None = None, limit: int = 100
    ) -> list[Approval]:
        return self._decisions.approvals(status=status, customer_id=customer_id, limit=limit)

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
        return self._decisions.decide_approval(approval, status, by=by, note=note,
                                               result=result, effects=effects)

    # --- read models -----------------------------------------------------------------------

    def outbox(self, customer_id: str | None = None) -> list[dict[str, Any]]:
        return self._decisions.outbox(customer_id)

    def counts(self) -> dict[str, int]:
        return self._decisions.counts()
