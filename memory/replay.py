"""Refuse a replayed webhook signature: each signed token or signature is used once.

A provider signs a webhook with a timestamp, so a captured request passes the signature check
for a few minutes; within that window only memory can tell a replay. The memory is the
``webhook_receipts`` table, so it holds across processes sharing the database: the first use of
a key inserts its row and commits, a second use meets the unique (source, key) and is refused,
and of two identical requests at once exactly one inserts.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import Engine, delete, insert
from sqlalchemy.exc import IntegrityError

from core.clock import Clock
from memory import db


def _digest(key: str) -> str:
    """The stored form of a key: its SHA-256 in hex (64 characters, whatever the key)."""
    return hashlib.sha256(key.encode()).hexdigest()


class ReplayGuard:
    """Remembers which signed webhooks were accepted, until their signatures expire."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def first_use(self, source: str, key: str, expires_at: datetime) -> bool:
        """Record ``key`` for ``source`` until ``expires_at``; False if it was already recorded
        (a replay). Committed before it returns, so before the caller stores anything. The
        source's expired keys are deleted in the same transaction (an index serves it)."""
        table = db.webhook_receipts
        now = self.clock.now()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    delete(table).where(table.c.source == source, table.c.expires_at < now)
                )
                conn.execute(insert(table).values(
                    source=source, key=_digest(key), first_seen_at=now, expires_at=expires_at
                ))
        except IntegrityError:
            return False
        return True

    def release(self, source: str, key: str) -> None:
        """Forget ``key``: what it signed was not stored, so the provider's retry must pass."""
        table = db.webhook_receipts
        with self.engine.begin() as conn:
            conn.execute(
                delete(table).where(table.c.source == source, table.c.key == _digest(key))
            )
