"""Transactional notifications: one row per ``POST /v1/notifications``, keyed by its idempotency
key, pointing at the decision and the outbox row that carry it.

A row is *reserved* before the policy decides (status ``deciding``, leased until
``locked_until``): of two requests with the same key exactly one inserts it, the other finds it.
When the decision is committed the row is *finished* with the answer the API gives (``queued``,
``scheduled``, ``held`` or ``suppressed``), which a repeated key returns as it is. A process that
dies between the two leaves the row leased; once the lease has run out a retry takes it over
(the decision itself is unique per notification, so it is not made twice).

The row holds no message text and no variables: those live (masked) in the outbox row and the
decision, so erasing a customer erases them there.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    Engine,
    and_,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from core.clock import Clock, aware, utc
from memory.db import notifications


class NotificationRow(BaseModel):
    id: str
    idempotency_key: str | None
    request_hash: str
    customer_id: str
    template: str
    status: str
    decision_id: str | None = None
    outbox_id: str | None = None
    answer: dict[str, Any] | None = None
    locked_until: datetime | None = None
    created_at: datetime
    updated_at: datetime


def _row(row: Any) -> NotificationRow:
    data = dict(row._mapping)
    for key in ("locked_until", "created_at", "updated_at"):
        data[key] = aware(data.get(key))
    return NotificationRow.model_validate(data)


class Notifications:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def reserve(
        self, *, id: str, idempotency_key: str | None, request_hash: str, customer_id: str,
        template: str, lease: timedelta,
    ) -> tuple[NotificationRow, bool]:
        """Insert the row (status ``deciding``, leased); with a key already used, the row
        that holds it and False."""
        now = self.clock.now()
        values = {
            "id": id, "idempotency_key": idempotency_key, "request_hash": request_hash,
            "customer_id": customer_id, "template": template, "status": "deciding",
            "locked_until": now + lease, "created_at": now, "updated_at": now,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(notifications).values(**values))
        except IntegrityError:
            found = self.by_key(idempotency_key) if idempotency_key else None
            if found is None:
                raise
            return found, False
        return NotificationRow.model_validate(values), True

    def take_over(self, notification_id: str, lease: timedelta) -> bool:
        """Lease a row still ``deciding`` whose lease ran out (its process died); True if this
        caller won it."""
        now = self.clock.now()
        n = notifications
        with self.engine.begin() as conn:
            return conn.execute(
                update(n).where(
                    n.c.id == notification_id, n.c.status == "deciding",
                    or_(n.c.locked_until.is_(None), n.c.locked_until < now),
                ).values(locked_until=now + lease, updated_at=now)
            ).rowcount == 1

    def finish(
        self, notification_id: str, *, status: str, decision_id: str, outbox_id: str | None,
        answer: dict[str, Any],
    ) -> None:
        n = notifications
        with self.engine.begin() as conn:
            conn.execute(
                update(n).where(and_(n.c.id == notification_id, n.c.status == "deciding"))
                .values(status=status, decision_id=decision_id, outbox_id=outbox_id,
                        answer=answer, locked_until=None, updated_at=self.clock.now())
            )

    def get(self, notification_id: str) -> NotificationRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(notifications).where(notifications.c.id == notification_id)
            ).first()
        return _row(row) if row else None

    def by_key(self, idempotency_key: str) -> NotificationRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(notifications).where(notifications.c.idempotency_key == idempotency_key)
            ).first()
        return _row(row) if row else None

    def reassign(self, survivor_id: str, merged_id: str) -> None:
        """After two profiles merged: the merged one's notifications belong to the survivor."""
        with self.engine.begin() as conn:
            conn.execute(
                update(notifications).where(notifications.c.customer_id == merged_id)
                .values(customer_id=survivor_id, updated_at=utc(self.clock.now()))
            )
