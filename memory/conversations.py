"""Conversations and their messages: one open conversation per customer across channels,
inbound messages accepted once per (channel, external id), the transcript, and what a web-chat
stream has not shown yet.

Outbound messages are written with their outbox rows by :mod:`memory.effects`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from core.clock import Clock, IdFactory, utc
from core.domain import Channel, Conversation, Message
from core.effects import InboundAccepted
from memory import db


def message_from_row(row: Any) -> Message:
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


class Conversations:
    def __init__(self, engine: Engine, clock: Clock, ids: IdFactory) -> None:
        self.engine = engine
        self.clock = clock
        self.ids = ids

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
            message=message_from_row(row), is_new=False, turn_status=row.turn_status
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
        return [message_from_row(r) for r in rows]

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
        return [message_from_row(r) for r in reversed(rows)]

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
        return message_from_row(row) if row else None

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
        return [message_from_row(r) for r in rows]

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
