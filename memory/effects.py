"""The writers every transaction shares: a turn's effects, and what happened to a handoff.

:meth:`EffectWriter.apply` is the one place outbound messages and their outbox rows are
written (with CRM changes, activities, handoffs and approvals): a turn
(:meth:`memory.decisions.Decisions.commit_turn`), an approved action
(:meth:`memory.decisions.Decisions.decide_approval`) and a person's reply from the inbox
(:meth:`memory.handoffs.HandoffRepository.reply`) all go through it, each in its own caller's
transaction (the ``Connection`` it passes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, insert, update

from core.clock import Clock, IdFactory
from core.effects import TurnEffects
from memory import db
from memory.crm import add_activities, apply_crm
from memory.sync import SyncOut, activity_changes


class EffectWriter:
    def __init__(self, clock: Clock, ids: IdFactory) -> None:
        self.clock = clock
        self.ids = ids
        #: queue a signed webhook for every handoff event (``JOURNEY_HANDOFF_WEBHOOK_URL``)
        self.handoff_webhooks = False
        #: queues the CRM sync-out webhooks of profile changes (``JOURNEY_CRM_WEBHOOK_URL``)
        self.sync = SyncOut(ids)

    def apply(
        self,
        conn: Connection,
        customer_id: str,
        conversation_id: str,
        decision_id: str | None,
        effects: TurnEffects,
        now: datetime,
        *,
        key: str,
        author: str = "bot",
        key_by: Literal["index", "message"] = "index",
    ) -> None:
        """Write ``effects`` in the caller's transaction.

        Each outbound message is a transcript row by ``author`` and an outbox row whose
        idempotency key is ``<key>:<n>`` (its place in the turn) or, with ``key_by="message"``,
        ``<key>:<message id>`` (a person's reply: ``handoff:<id>:<message id>``).
        ``decision_id`` is None for a person's reply (``meta.handoff_id`` says which handoff).
        """
        for i, out in enumerate(effects.outbound):
            conn.execute(
                insert(db.messages).values(
                    id=out.message_id, conversation_id=conversation_id,
                    customer_id=customer_id, direction="outbound",
                    channel=out.channel, text=out.text, author=author,
                    created_at=now, turn_status=None,
                )
            )
            conn.execute(
                insert(db.outbox).values(
                    id=out.outbox_id, decision_id=decision_id, message_id=out.message_id,
                    customer_id=customer_id, channel=out.channel,
                    address=out.address, text=out.text, purpose=out.purpose,
                    status=out.status, attempts=0, created_at=now,
                    idempotency_key=f"{key}:{out.message_id if key_by == 'message' else i}",
                    sent_at=now if out.status == "sent" else None,
                    not_before=out.not_before, is_reply=out.is_reply,
                    next_attempt_at=out.not_before or now, meta=out.meta or None,
                )
            )
        crm = effects.crm
        changed = apply_crm(conn, customer_id, crm, now=self.clock.now()) \
            if crm.stage or crm.fields or crm.consent or crm.increments else []
        add_activities(conn, customer_id, decision_id, effects.activities, done=False, now=now)
        self.sync.queue(conn, customer_id,
                        changed + activity_changes(effects.activities, decision_id), now=now)
        for h in effects.handoffs:
            conn.execute(
                insert(db.handoffs).values(
                    **h.model_dump(exclude={"created_at"}), created_at=now, updated_at=now
                )
            )
            self.handoff_event(
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

    def handoff_event(
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
