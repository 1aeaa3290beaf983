"""CRM sync out: what changed on a profile, queued as signed webhooks in the same transaction.

When ``JOURNEY_CRM_WEBHOOK_URL`` is set, every profile change is queued as a ``sync`` job in the
transaction that makes it, so a change is never recorded without its webhook (nor the other
way round); the worker delivers it (:class:`journey.webhooks.CrmWebhooks`) with retries:

    profile.updated    name, timezone, locale, channel preference or attributes changed
    stage.changed      the lifecycle stage moved (``from``, ``to``)
    consent.changed    consent changed per channel and purpose (as the ledger records it)
    crm.activity       an activity was logged on the profile (a note, a task, a stage change)
    customer.erased    the customer was erased (their id only)

A change that changes nothing (the same value written again) queues nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert

from core.clock import IdFactory
from memory import db

#: (event type, what changed)
Change = tuple[str, dict[str, Any]]
EVENT_TYPES = ("profile.updated", "stage.changed", "consent.changed", "crm.activity",
               "customer.erased")


class SyncOut:
    """Queues the sync-out webhooks of profile changes (off until a URL is configured)."""

    def __init__(self, ids: IdFactory) -> None:
        self.ids = ids
        self.enabled = False

    def queue(self, conn: Connection, customer_id: str, changes: Sequence[Change], *,
              now: datetime, erased: bool = False) -> list[str]:
        """Queue ``changes`` in the caller's transaction (the ``profile.updated`` ones as one
        event); returns the event ids. ``erased``: the customer row is gone, so the job is
        not tied to it."""
        rows = self.rows(customer_id, changes, now=lambda: now, erased=erased)
        if rows:
            conn.execute(insert(db.jobs), rows)
        return [row["payload"]["id"] for row in rows]

    def rows(self, customer_id: str, changes: Sequence[Change], *,
             now: Callable[[], datetime], erased: bool = False) -> list[dict[str, Any]]:
        """The ``sync`` job rows for ``changes`` (none while the sync is off); ``now`` gives
        each its time (a batch of events gives them a microsecond apart, in order)."""
        if not self.enabled or not changes:
            return []
        events: list[Change] = []
        updated: dict[str, Any] = {}
        for kind, data in changes:
            if kind == "profile.updated":
                for key, value in data.items():
                    updated[key] = ({**updated.get(key, {}), **value}
                                    if key == "attributes" else value)
            else:
                events.append((kind, data))
        if updated:
            events.insert(0, ("profile.updated", updated))
        rows = []
        for kind, data in events:
            event_id, at = self.ids("cev"), now()
            rows.append(dict(
                id=self.ids("job"), kind="sync", customer_id=None if erased else customer_id,
                dedupe_key=f"sync:{event_id}", due_at=at, status="pending", attempts=0,
                journey=None, tag=None, error=None, created_at=at, updated_at=at,
                payload={"id": event_id, "type": kind, "customer_id": customer_id,
                         "occurred_at": at.isoformat(), "data": data},
            ))
        return rows


def activity_changes(activities: Sequence[Any], decision_id: str | None) -> list[Change]:
    """``crm.activity`` for each activity logged (``core.effects.Activity``)."""
    return [("crm.activity", {"id": a.id, "kind": a.kind, "body": a.body,
                              "decision_id": decision_id}) for a in activities]
