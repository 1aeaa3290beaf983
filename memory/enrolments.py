"""Enrolments in journeys with steps: durable state the workers step through.

An enrolment is one customer's pass through one version of a journey (``enrolments``); what
each step did is logged (``enrolment_steps``) and the journey's definition at that version is
kept (``journey_versions``), so a customer mid-journey stays on the version they entered after
the file changes. The next step is a job of kind ``enrolment`` (``memory.jobs``), one per
``seq``: a worker that dies mid-step leaves its lease to run out and the step runs again, and a
transition is written only if the enrolment is still at the ``seq`` the job was made for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Engine, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from core.clock import Clock, IdFactory, aware
from memory import db

Arm = Literal["treatment", "holdout"]


class Enrolment(BaseModel):
    id: str
    journey: str
    version: str
    customer_id: str
    arm: Arm
    status: Literal["active", "exited"]
    step: str | None
    seq: int
    wait_until: datetime | None = None
    variants: dict[str, str] = {}
    trigger_event_id: str | None = None
    entered_at: datetime
    exited_at: datetime | None = None
    exit_reason: str | None = None
    goal_until: datetime | None = None
    converted_at: datetime | None = None
    goal_event_id: str | None = None


_TIMES = ("wait_until", "entered_at", "exited_at", "goal_until", "converted_at")


def _job_key(enrolment_id: str, seq: int) -> str:
    return f"enrolment:{enrolment_id}:{seq}"


def _job_keys(enrolment: Enrolment) -> list[str]:
    """The keys its pending job can have: for its ``seq``, or the next one if a worker moved
    it on since it was read (the unique index on ``dedupe_key`` finds them; a LIKE would scan
    every pending job)."""
    return [_job_key(enrolment.id, enrolment.seq), _job_key(enrolment.id, enrolment.seq + 1)]


def _enrolment(row: Any) -> Enrolment:
    data = dict(row._mapping)
    for key in _TIMES:
        data[key] = aware(data[key])
    data.pop("updated_at", None)
    return Enrolment.model_validate(data)


@dataclass
class StepLog:
    """One line of what a step did (``enrolment_steps``)."""

    step: str
    kind: str
    outcome: str
    detail: str | None = None
    reason_codes: list[str] = field(default_factory=list)
    decision_id: str | None = None


@dataclass
class Transition:
    """What a step changed: the enrolment's new fields, the log lines, and the next job."""

    changes: dict[str, Any] = field(default_factory=dict)
    logs: list[StepLog] = field(default_factory=list)
    #: the next step's job is due then (None: no next job, the enrolment exited or waits on
    #: the job it has)
    next_due: datetime | None = None
    #: a new step: ``seq`` goes up by one (the job is for the next ``seq``)
    advance: bool = False


class Enrolments:
    def __init__(self, engine: Engine, clock: Clock, ids: IdFactory) -> None:
        self.engine = engine
        self.clock = clock
        self.ids = ids
        self._definitions: dict[tuple[str, str], dict[str, Any]] = {}

    # --- versions ---------------------------------------------------------------------------

    def pin(self, journey: str, version: str, definition: dict[str, Any]) -> None:
        """Keep ``definition`` as ``journey``'s ``version`` (once; a version never changes)."""
        if (journey, version) in self._definitions:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(db.journey_versions).values(
                    journey=journey, version=version, definition=definition,
                    created_at=self.clock.now()))
        except IntegrityError:
            pass
        self._definitions[(journey, version)] = definition

    def definition(self, journey: str, version: str) -> dict[str, Any] | None:
        key = (journey, version)
        if key not in self._definitions:
            with self.engine.connect() as conn:
                found = conn.execute(select(db.journey_versions.c.definition).where(
                    db.journey_versions.c.journey == journey,
                    db.journey_versions.c.version == version)).scalar()
            if found is None:
                return None
            self._definitions[key] = found
        return self._definitions[key]

    def versions(self, journey: str) -> list[tuple[str, datetime]]:
        """The journey's versions customers entered, oldest first, with when each was first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(db.journey_versions.c.version,
                                       db.journey_versions.c.created_at)
                                .where(db.journey_versions.c.journey == journey)
                                .order_by(db.journey_versions.c.created_at)).all()
        return [(r.version, r.created_at) for r in rows]

    # --- enrolling --------------------------------------------------------------------------

    def enrol(self, *, journey: str, version: str, customer_id: str, arm: Arm,
              step: str | None, trigger_event_id: str | None, goal_until: datetime | None,
              once_ever: bool, logs: Sequence[StepLog],
              entered_at: datetime | None = None) -> Enrolment | None:
        """Enrol the customer and queue the first step's job, in one transaction. None when
        they are in this journey already (or ever were, with ``once_ever``). ``entered_at``:
        when the trigger fired (default: now)."""
        now = self.clock.now()
        e = db.enrolments
        with self.engine.begin() as conn:
            cond = [e.c.customer_id == customer_id, e.c.journey == journey]
            if not once_ever:
                cond.append(e.c.status == "active")
            if conn.execute(select(func.count()).select_from(e).where(*cond)).scalar_one():
                return None
            enrolment = Enrolment(
                id=self.ids("enr"), journey=journey, version=version, customer_id=customer_id,
                arm=arm, status="active" if step else "exited", step=step, seq=0,
                trigger_event_id=trigger_event_id, entered_at=entered_at or now,
                goal_until=goal_until,
                exited_at=None if step else now, exit_reason=None if step else arm,
            )
            conn.execute(insert(e).values(**enrolment.model_dump(), updated_at=now))
            self._log(conn, enrolment, logs, now, base=0)
            if step:
                self._job(conn, enrolment, 0, now)
        return enrolment

    def _job(self, conn: Any, enrolment: Enrolment, seq: int, due: datetime) -> None:
        now = self.clock.now()
        conn.execute(insert(db.jobs).values(
            id=self.ids("job"), kind="enrolment", customer_id=enrolment.customer_id,
            dedupe_key=_job_key(enrolment.id, seq), payload={
                "enrolment_id": enrolment.id, "seq": seq, "journey": enrolment.journey},
            due_at=due, status="pending", attempts=0, journey=enrolment.journey,
            created_at=now, updated_at=now))

    def _log(self, conn: Any, enrolment: Enrolment, logs: Iterable[StepLog],
             now: datetime, *, base: int | None = None) -> None:
        # lines written together share ``at``: ``position`` keeps their order (entering is
        # 0, a transition from ``seq`` is written at most once, an exit after it)
        base = (enrolment.seq + 1) * 1000 if base is None else base
        rows = [{"id": self.ids("est"), "enrolment_id": enrolment.id,
                 "customer_id": enrolment.customer_id, "journey": enrolment.journey,
                 "version": enrolment.version, "step": log.step, "kind": log.kind,
                 "outcome": log.outcome, "detail": (log.detail or None) and log.detail[:120],
                 "reason_codes": log.reason_codes, "decision_id": log.decision_id, "at": now,
                 "position": base + n}
                for n, log in enumerate(logs)]
        if rows:
            conn.execute(insert(db.enrolment_steps), rows)

    # --- stepping ---------------------------------------------------------------------------

    def get(self, enrolment_id: str) -> Enrolment | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(db.enrolments).where(
                db.enrolments.c.id == enrolment_id)).first()
        return _enrolment(row) if row else None

    def apply(self, enrolment: Enrolment, change: Transition) -> bool:
        """Write ``change`` if the enrolment is still at its ``seq`` (False: another worker
        moved it on, nothing is written)."""
        now = self.clock.now()
        e = db.enrolments
        seq = enrolment.seq + (1 if change.advance else 0)
        with self.engine.begin() as conn:
            won = conn.execute(update(e).where(e.c.id == enrolment.id,
                                               e.c.seq == enrolment.seq,
                                               e.c.status == "active")
                               .values(**change.changes, seq=seq, updated_at=now)).rowcount
            if not won:
                return False
            self._log(conn, enrolment, change.logs, now)
            if change.next_due is not None:
                self._job(conn, enrolment, seq, change.next_due)
        return True

    def record_variant(self, enrolment: Enrolment, step: str, variant: str) -> Enrolment:
        """Keep the variant a split step drew before anything else happens (a retried step
        takes the same one)."""
        variants = {**enrolment.variants, step: variant}
        with self.engine.begin() as conn:
            conn.execute(update(db.enrolments).where(db.enrolments.c.id == enrolment.id)
                         .values(variants=variants))
        return enrolment.model_copy(update={"variants": variants})

    # --- what events do -----------------------------------------------------------------------

    def watching(self, customer_ids: Sequence[str], since: datetime) -> list[Enrolment]:
        """The customers' enrolments still counting their goal, or still active."""
        e = db.enrolments
        with self.engine.connect() as conn:
            rows = conn.execute(select(e).where(
                e.c.customer_id.in_(sorted(set(customer_ids))),
                (e.c.status == "active") | and_(e.c.converted_at.is_(None),
                                                e.c.goal_until >= since))).all()
        return [_enrolment(r) for r in rows]

    def convert(self, enrolment_id: str, at: datetime, event_id: str) -> bool:
        e = db.enrolments
        with self.engine.begin() as conn:
            return bool(conn.execute(update(e).where(
                e.c.id == enrolment_id, e.c.converted_at.is_(None))
                .values(converted_at=at, goal_event_id=event_id,
                        updated_at=self.clock.now())).rowcount)

    def wake(self, enrolments: Sequence[Enrolment]) -> int:
        """Their pending step jobs are due now (an event they wait for, or exit on, came)."""
        if not enrolments:
            return 0
        now = self.clock.now()
        j = db.jobs
        with self.engine.begin() as conn:
            return int(conn.execute(update(j).where(
                j.c.dedupe_key.in_(sorted({k for e in enrolments for k in _job_keys(e)})),
                j.c.status == "pending", j.c.due_at > now)
                .values(due_at=now, updated_at=now)).rowcount)

    def end(self, enrolment: Enrolment, reason: str, logs: Sequence[StepLog] = (), *,
            changes: dict[str, Any] | None = None) -> bool:
        """Exit an active enrolment now (with ``changes``, if it is still at its ``seq``)
        and cancel its pending job."""
        now = self.clock.now()
        e, j = db.enrolments, db.jobs
        cond = [e.c.id == enrolment.id, e.c.status == "active"]
        if changes:
            cond.append(e.c.seq == enrolment.seq)
        with self.engine.begin() as conn:
            won = conn.execute(update(e).where(*cond)
                               .values(**{**(changes or {}), "wait_until": None},
                                       status="exited", exited_at=now,
                                       exit_reason=reason[:120], updated_at=now)).rowcount
            if not won:
                return False
            conn.execute(update(j).where(j.c.dedupe_key.in_(_job_keys(enrolment)),
                                         j.c.status == "pending")
                         .values(status="cancelled", error=f"enrolment exited: {reason}"[:2000],
                                 updated_at=now))
            self._log(conn, enrolment, logs, now, base=(enrolment.seq + 1) * 1000 + 500)
        return True

    def active(self, customer_id: str, journeys: Sequence[str]) -> list[Enrolment]:
        e = db.enrolments
        with self.engine.connect() as conn:
            rows = conn.execute(select(e).where(e.c.customer_id == customer_id,
                                                e.c.journey.in_(list(journeys)),
                                                e.c.status == "active")).all()
        return [_enrolment(r) for r in rows]

    # --- what the journey has seen ------------------------------------------------------------

    def variant_counts(self, journey: str, step: str) -> dict[str, tuple[int, int]]:
        """Each variant of ``step``: (customers it went to, of those converted)."""
        e = db.enrolments
        s = db.enrolment_steps
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(s.c.detail, func.count(), func.count(e.c.converted_at))
                .select_from(s.join(e, e.c.id == s.c.enrolment_id))
                .where(s.c.journey == journey, s.c.step == step, s.c.outcome == "variant")
                .group_by(s.c.detail)).all()
        return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}

    def for_journey(self, journey: str) -> list[Enrolment]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(db.enrolments).where(
                db.enrolments.c.journey == journey).order_by(db.enrolments.c.entered_at)).all()
        return [_enrolment(r) for r in rows]

    def steps(self, journey: str, since: datetime | None = None) -> list[dict[str, Any]]:
        """The journey's step log (written at or after ``since``), each enrolment's in order."""
        s = db.enrolment_steps
        query = select(s).where(s.c.journey == journey)
        if since is not None:
            query = query.where(s.c.at >= since)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(s.c.enrolment_id, s.c.position)).all()
        return [dict(r._mapping) for r in rows]
