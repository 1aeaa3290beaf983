"""The audit trail: decisions and the turn transaction, the send ledger the caps count,
approvals held for a person, and the outbox and table counts as read models.

:meth:`Decisions.commit_turn` writes a turn whole or not at all: the decision, its reason codes
and its effects (:meth:`memory.effects.EffectWriter.apply`: messages and outbox rows, CRM
changes, activities, handoffs, approvals) in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from core.clock import Clock, utc
from core.domain import Approval, Decision
from core.effects import LedgerEntry, TurnEffects
from memory import db
from memory.effects import EffectWriter


def decision_from_row(row: Any) -> Decision:
    data = dict(row._mapping)
    return Decision.model_validate(
        {
            **data,
            "inputs": data.get("inputs") or {},
            "rejected": data.get("rejected") or [],
            "policy_version": data.get("policy_version") or "",
            "created_at": utc(row.created_at),
        }
    )


class Decisions:
    def __init__(self, engine: Engine, clock: Clock, effects: EffectWriter) -> None:
        self.engine = engine
        self.clock = clock
        self.effects = effects

    def get_decision(self, decision_id: str) -> Decision | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(db.decisions).where(db.decisions.c.id == decision_id)
            ).first()
        return decision_from_row(row) if row else None

    def decision_for_job(self, job_id: str) -> Decision | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(db.decisions).where(db.decisions.c.job_id == job_id)
            ).first()
            return decision_from_row(row) if row else None

    def decision_for_inbound(self, message_id: str) -> Decision | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(db.decisions).where(db.decisions.c.inbound_message_id == message_id)
            ).first()
            return decision_from_row(row) if row else None

    def decisions(
        self,
        *,
        conversation_id: str | None = None,
        customer_id: str | None = None,
        limit: int = 200,
    ) -> list[Decision]:
        query = select(db.decisions).order_by(db.decisions.c.created_at).limit(limit)
        if conversation_id:
            query = query.where(db.decisions.c.conversation_id == conversation_id)
        if customer_id:
            query = query.where(db.decisions.c.customer_id == customer_id)
        with self.engine.connect() as conn:
            return [decision_from_row(r) for r in conn.execute(query).all()]

    def commit_turn(self, decision: Decision, effects: TurnEffects) -> Decision:
        """Record the decision and apply its effects in one transaction.

        Idempotent per inbound message (per job, for a proactive decision): if a decision
        for it exists, nothing is written and the stored decision is returned.
        """
        now = decision.created_at
        if decision.inbound_message_id is not None:
            same = db.decisions.c.inbound_message_id == decision.inbound_message_id
            key = decision.inbound_message_id
        elif decision.job_id is not None:
            same = db.decisions.c.job_id == decision.job_id
            key = f"job:{decision.job_id}"
        else:
            raise ValueError("a decision answers an inbound message or a job")
        try:
            with self.engine.begin() as conn:
                exists = conn.execute(select(db.decisions.c.id).where(same)).first()
                if exists:
                    raise _AlreadyRecorded
                conn.execute(
                    insert(db.decisions).values(
                        **decision.model_dump(mode="json", exclude={"created_at"}),
                        created_at=now,
                    )
                )
                codes = sorted({
                    code[:160] for code in (
                        *decision.reasons,
                        *(c for v in decision.verdicts for c in v.reason_codes),
                        # ?reason=forbidden_claim finds forbidden_claim:<name> too
                        *(c.split(":", 1)[0] for v in decision.verdicts
                          for c in v.reason_codes if ":" in c),
                    )
                })
                if codes:
                    conn.execute(
                        insert(db.decision_reasons),
                        [
                            {"decision_id": decision.id, "code": code,
                             "customer_id": decision.customer_id}
                            for code in codes
                        ],
                    )
                self.effects.apply(
                    conn, decision.customer_id, decision.conversation_id, decision.id,
                    effects, now, key=key,
                )
                if decision.inbound_message_id is not None:
                    conn.execute(
                        update(db.messages)
                        .where(db.messages.c.id == decision.inbound_message_id)
                        .values(turn_status="done")
                    )
        except (_AlreadyRecorded, IntegrityError):
            with self.engine.connect() as conn:
                row = conn.execute(select(db.decisions).where(same)).first()
            stored = decision_from_row(row) if row else None
            if stored is None:
                raise
            return stored
        return decision

    # --- policy facts and the audit trail ---------------------------------------------------

    def ledger(self, customer_id: str, since: datetime) -> list[LedgerEntry]:
        """Outbound messages delivered (or due) since ``since``, scheduled ones included."""
        at = func.coalesce(db.outbox.c.not_before, db.outbox.c.created_at)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.outbox.c.id, db.outbox.c.channel, db.outbox.c.purpose,
                       at.label("at"), db.outbox.c.is_reply)
                .where(db.outbox.c.customer_id == customer_id, at >= since,
                       db.outbox.c.status != "cancelled")
            ).all()
        return [
            LedgerEntry(id=r.id, channel=r.channel, purpose=r.purpose, at=utc(r.at),
                        is_reply=bool(r.is_reply))
            for r in rows
        ]

    def stalled_turns(self, conversation_id: str, limit: int = 10) -> int:
        """How many of the conversation's latest decisions, in a row, made no progress."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.decisions.c.inputs)
                .where(db.decisions.c.conversation_id == conversation_id)
                .order_by(db.decisions.c.created_at.desc(), db.decisions.c.id.desc())
                .limit(limit)
            ).all()
        count = 0
        for (inputs,) in rows:
            if not (inputs or {}).get("stalled"):
                break
            count += 1
        return count

    def search_decisions(
        self,
        *,
        customer_id: str | None = None,
        conversation_id: str | None = None,
        reason: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Decision]:
        """Decisions newest first, filtered by customer, conversation and reason code."""
        query = select(db.decisions)
        if reason:
            matching = select(db.decision_reasons.c.decision_id).where(
                db.decision_reasons.c.code == reason
            )
            if customer_id:
                matching = matching.where(db.decision_reasons.c.customer_id == customer_id)
            query = query.where(db.decisions.c.id.in_(matching))
        if customer_id:
            query = query.where(db.decisions.c.customer_id == customer_id)
        if conversation_id:
            query = query.where(db.decisions.c.conversation_id == conversation_id)
        query = query.order_by(
            db.decisions.c.created_at.desc(), db.decisions.c.id.desc()
        ).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [decision_from_row(r) for r in conn.execute(query).all()]

    # --- approvals ----------------------------------------------------------------------------

    @staticmethod
    def _approval(row: Any) -> Approval:
        data = dict(row._mapping)
        for key in ("created_at", "decided_at", "deliver_at"):
            if data[key] is not None:
                data[key] = utc(data[key])
        return Approval.model_validate(data)

    def get_approval(self, approval_id: str) -> Approval | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(db.approvals).where(db.approvals.c.id == approval_id)
            ).first()
            return self._approval(row) if row else None

    def approvals(
        self, *, status: str | None = None, customer_id: str | None = None, limit: int = 100
    ) -> list[Approval]:
        query = select(db.approvals).order_by(db.approvals.c.created_at, db.approvals.c.id)
        if status:
            query = query.where(db.approvals.c.status == status)
        if customer_id:
            query = query.where(db.approvals.c.customer_id == customer_id)
        with self.engine.connect() as conn:
            return [self._approval(r) for r in conn.execute(query.limit(limit)).all()]

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
        """Close a pending approval and apply its effects in one transaction, exactly once.

        If it was already decided (another request, a retried resume) nothing is written and
        the stored approval is returned.
        """
        now = self.clock.now()
        with self.engine.begin() as conn:
            claimed = conn.execute(
                update(db.approvals)
                .where(db.approvals.c.id == approval.id, db.approvals.c.status == "pending")
                .values(status=status, decided_by=by, note=note, result=result,
                        decided_at=now)
            ).rowcount
            if claimed == 1 and status == "approved":
                self.effects.apply(
                    conn, approval.customer_id, approval.conversation_id,
                    approval.decision_id, effects, now, key=f"approval:{approval.id}",
                )
        stored = self.get_approval(approval.id)
        if stored is None:  # pragma: no cover - we just read it
            raise KeyError(approval.id)
        return stored

    # --- read models ------------------------------------------------------------------------

    def outbox(self, customer_id: str | None = None) -> list[dict[str, Any]]:
        query = select(db.outbox).order_by(db.outbox.c.created_at, db.outbox.c.idempotency_key)
        if customer_id:
            query = query.where(db.outbox.c.customer_id == customer_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]

    def counts(self) -> dict[str, int]:
        tables: Iterable[Any] = (
            db.customers, db.messages, db.decisions, db.outbox, db.handoffs, db.events
        )
        with self.engine.connect() as conn:
            return {
                t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in tables
            }


class _AlreadyRecorded(Exception):
    pass
