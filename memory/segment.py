"""Which Segment messages were already applied, so a repeated ``messageId`` changes nothing.

A ``track``/``page``/``screen``/``group`` is an event whose id is its ``messageId``: the events
table itself tells a repeat. An ``identify`` or ``alias`` leaves no row of its own, so its
``messageId`` is remembered here, in the ``webhook_receipts`` table under the source
``segment`` (no table of its own: a receipt is a receipt), as its SHA-256, for
:data:`RECEIPT_TTL`: longer than any client retries (analytics-python gives up after 12 hours)
and than Segment's own de-duplication window (24 hours). A message is looked up before it is
applied and recorded after, so a crash in between leaves no receipt and the client's retry
applies it; two copies at once may both be applied, which writes the same values twice (the
consent ledger records only changes).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from core.clock import Clock
from memory import db

SOURCE = "segment"
RECEIPT_TTL = timedelta(days=30)


def _digest(message_id: str) -> str:
    return hashlib.sha256(message_id.encode()).hexdigest()


class MessageReceipts:
    """The ``messageId`` of every identify and alias applied in the last 30 days."""

    def __init__(self, engine: Engine, clock: Clock, ttl: timedelta = RECEIPT_TTL) -> None:
        self.engine = engine
        self.clock = clock
        self.ttl = ttl

    def seen(self, message_id: str) -> bool:
        """Was a message with this id applied (and its receipt not yet expired)?"""
        table = db.webhook_receipts
        with self.engine.connect() as conn:
            return conn.execute(select(table.c.key).where(
                table.c.source == SOURCE, table.c.key == _digest(message_id),
                table.c.expires_at >= self.clock.now(),
            )).first() is not None

    def record(self, message_id: str) -> bool:
        """Remember ``message_id`` as applied; False if it already was. Expired receipts are
        deleted in the same transaction (an index serves it)."""
        table = db.webhook_receipts
        now = self.clock.now()
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(table).where(table.c.source == SOURCE,
                                                 table.c.expires_at < now))
                conn.execute(insert(table).values(source=SOURCE, key=_digest(message_id),
                                                  first_seen_at=now, expires_at=now + self.ttl))
        except IntegrityError:
            return False
        return True
