"""The outbox's queue side: claiming due messages, recording how each attempt ended, the
dead-letter queue and its replay, delivery-status callbacks.

Status of an outbox row:

    pending ─┐  (due at next_attempt_at)        ┌─► sent ──(provider callbacks: provider_status)
    scheduled┴─► sending (leased to a worker) ──┼─► pending again, later (a transient failure)
                                                ├─► dead (attempts used up, or a permanent error)
                                                └─► cancelled (stale when it was due)
    dead ──(journey outbox replay)──► pending

Claiming works as in :mod:`memory.jobs`: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a
conditional update on SQLite. A row leased to a worker that died is claimed again when the
lease runs out; the provider call carries the same idempotency key, so it is not sent twice.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine, and_, func, or_, select, update

from core.clock import Clock, aware
from memory import db

DUE_STATUSES = ("pending", "scheduled")


class OutboxRow(BaseModel):
    id: str
    decision_id: str | None
    message_id: str
    customer_id: str
    channel: str
    address: str
    text: str
    purpose: str
    status: str
    idempotency_key: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None = None
    not_before: datetime | None = None
    is_reply: bool | None = None
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    provider_message_id: str | None = None
    provider_status: str | None = None
    meta: dict[str, Any] | None = None


def _row(row: Any) -> OutboxRow:
    data = {k: v for k, v in dict(row._mapping).items() if k != "locked_until"}
    for key in ("created_at", "sent_at", "not_before", "next_attempt_at"):
        data[key] = aware(data.get(key))
    return OutboxRow.model_validate(data)


def backoff(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Seconds before retry ``attempt`` (1-based): exponential, capped, with "equal jitter"
    (half fixed, half random) so retries after an outage do not arrive in lockstep."""
    ceiling = min(max_s, base_s * 2 ** (attempt - 1))
    return float(ceiling / 2 + (rng or random).uniform(0, ceiling / 2))


class OutboxQueue:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self._skip_locked = engine.dialect.name == "postgresql"

    def _due(self, now: datetime) -> Any:
        o = db.outbox
        when = func.coalesce(o.c.next_attempt_at, o.c.not_before, o.c.created_at)
        return or_(
            and_(o.c.status.in_(DUE_STATUSES), when <= now),
            and_(o.c.status == "sending", o.c.locked_until < now),
        )

    def claim(self, *, limit: int = 20, lease: timedelta) -> list[OutboxRow]:
        """Lease up to ``limit`` due rows to the caller; ``attempts`` counts this attempt."""
        now = self.clock.now()
        o = db.outbox
        due = self._due(now)
        when = func.coalesce(o.c.next_attempt_at, o.c.not_before, o.c.created_at)
        query = select(o.c.id).where(due).order_by(when, o.c.id).limit(limit)
        if self._skip_locked:
            query = query.with_for_update(skip_locked=True)
        claimed: list[OutboxRow] = []
        with self.engine.begin() as conn:
            for row_id in conn.execute(query).scalars().all():
                won = conn.execute(
                    update(o).where(o.c.id == row_id, due)
                    .values(status="sending", locked_until=now + lease,
                            attempts=o.c.attempts + 1)
                ).rowcount
                if won == 1:
                    claimed.append(_row(conn.execute(select(o).where(o.c.id == row_id)).first()))
        return claimed

    def _finish(self, row_id: str, **values: Any) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(
                update(db.outbox)
                .where(db.outbox.c.id == row_id, db.outbox.c.status == "sending")
                .values(locked_until=None, **values)
            ).rowcount == 1

    def mark_sent(self, row_id: str, *, provider_message_id: str | None,
                  provider_status: str, meta: dict[str, Any]) -> bool:
        return self._finish(row_id, status="sent", sent_at=self.clock.now(),
                            provider_message_id=provider_message_id,
                            provider_status=provider_status, meta=meta or None,
                            last_error=None)

    def mark_retry(self, row_id: str, error: str, retry_at: datetime) -> bool:
        return self._finish(row_id, status="pending", next_attempt_at=retry_at,
                            last_error=error[:2000])

    def mark_dead(self, row_id: str, error: str) -> bool:
        return self._finish(row_id, status="dead", last_error=error[:2000])

    def mark_deferred(self, row_id: str, until: datetime, reason: str) -> bool:
        """Not now (quiet hours when it came due): due again at ``until``; this claim does
        not count as an attempt."""
        o = db.outbox
        return self._finish(row_id, status="scheduled", not_before=until, next_attempt_at=until,
                            attempts=o.c.attempts - 1, last_error=reason[:2000])

    def mark_cancelled(self, row_id: str, reason: str) -> bool:
        return self._finish(row_id, status="cancelled", last_error=reason[:2000])

    def replay(self, ids: list[str] | None = None) -> int:
        """Put dead-lettered rows back in the queue, due now, with fresh attempts."""
        o = db.outbox
        query = update(o).where(o.c.status == "dead")
        if ids:
            query = query.where(o.c.id.in_(ids))
        with self.engine.begin() as conn:
            return conn.execute(
                query.values(status="pending", attempts=0, next_attempt_at=self.clock.now())
            ).rowcount

    def record_delivery_status(
        self, provider_message_id: str, status: str, error: str | None = None
    ) -> bool:
        """A provider's delivery callback (queued, sent, delivered, undelivered, failed).
        False if no outbox row has that provider message id."""
        values: dict[str, Any] = {"provider_status": status[:40]}
        if error:
            values["last_error"] = error[:2000]
        with self.engine.begin() as conn:
            return conn.execute(
                update(db.outbox)
                .where(db.outbox.c.provider_message_id == provider_message_id)
                .values(**values)
            ).rowcount > 0

    def get(self, row_id: str) -> OutboxRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(db.outbox).where(db.outbox.c.id == row_id)).first()
        return _row(row) if row else None

    def list(self, *, status: str | None = None, customer_id: str | None = None,
             limit: int = 200) -> list[OutboxRow]:
        o = db.outbox
        query = select(o).order_by(o.c.created_at, o.c.id).limit(limit)
        if status:
            query = query.where(o.c.status == status)
        if customer_id:
            query = query.where(o.c.customer_id == customer_id)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query).all()]

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.outbox.c.status, func.count()).group_by(db.outbox.c.status)
            ).all()
        return {status: n for status, n in rows}

    def next_due(self) -> datetime | None:
        o = db.outbox
        when = func.coalesce(o.c.next_attempt_at, o.c.not_before, o.c.created_at)
        with self.engine.connect() as conn:
            return aware(conn.execute(
                select(func.min(when)).where(o.c.status.in_(DUE_STATUSES))
            ).scalar())
