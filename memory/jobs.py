"""Persistent jobs for the workers: queued turns, journey wake-ups, scheduled actions.

A job is a row in ``jobs``, unique by ``dedupe_key`` (a repeated webhook or a trigger that
fires again cannot queue the same work twice). Workers claim due jobs with a lease:

- PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED`` so several workers (threads or processes)
  each take different rows without waiting on each other;
- SQLite: writers are serialised by the database; the claim is a conditional ``UPDATE`` whose
  row count says who won.

A job whose worker died is claimed again when its lease runs out (``locked_until``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Engine, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from core.clock import Clock, IdFactory, aware
from memory import db

JobKind = Literal["turn", "journey", "action", "webhook", "sync", "enrolment"]
JobStatus = Literal["pending", "running", "done", "cancelled", "failed"]
#: A job that fails this many times is marked failed (visible in `journey jobs`).
MAX_JOB_ATTEMPTS = 5


class Job(BaseModel):
    id: str
    kind: JobKind
    customer_id: str | None
    dedupe_key: str
    payload: dict[str, Any]
    due_at: datetime
    status: JobStatus
    attempts: int
    journey: str | None = None
    tag: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime


def _job(row: Any) -> Job:
    data = dict(row._mapping)
    for key in ("due_at", "created_at"):
        data[key] = aware(data[key])
    return Job.model_validate(data)


class Jobs:
    def __init__(self, engine: Engine, clock: Clock, ids: IdFactory) -> None:
        self.engine = engine
        self.clock = clock
        self.ids = ids
        self._skip_locked = engine.dialect.name == "postgresql"

    def enqueue(
        self,
        kind: JobKind,
        dedupe_key: str,
        payload: dict[str, Any],
        *,
        due_at: datetime | None = None,
        customer_id: str | None = None,
        journey: str | None = None,
        tag: str | None = None,
    ) -> tuple[str, bool]:
        """Queue a job once per ``dedupe_key``. Returns (job id, created)."""
        now = self.clock.now()
        job_id = self.ids("job")
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(db.jobs).values(
                    id=job_id, kind=kind, customer_id=customer_id, dedupe_key=dedupe_key[:240],
                    payload=payload, due_at=due_at or now, status="pending", attempts=0,
                    journey=journey, tag=tag, created_at=now, updated_at=now,
                ))
            return job_id, True
        except IntegrityError:
            with self.engine.connect() as conn:
                existing = conn.execute(
                    select(db.jobs.c.id).where(db.jobs.c.dedupe_key == dedupe_key[:240])
                ).scalar()
            if existing is None:
                raise
            return existing, False

    def claim(self, worker: str, *, limit: int = 10, lease: timedelta) -> list[Job]:
        """Take up to ``limit`` due jobs (pending, or running with an expired lease)."""
        now = self.clock.now()
        j = db.jobs
        due = or_(
            and_(j.c.status == "pending", j.c.due_at <= now),
            and_(j.c.status == "running", j.c.locked_until < now),
        )
        query = select(j.c.id).where(due).order_by(j.c.due_at, j.c.id).limit(limit)
        if self._skip_locked:
            query = query.with_for_update(skip_locked=True)
        claimed: list[Job] = []
        with self.engine.begin() as conn:
            for job_id in conn.execute(query).scalars().all():
                won = conn.execute(
                    update(j)
                    .where(j.c.id == job_id, due)
                    .values(status="running", locked_until=now + lease, worker=worker,
                            attempts=j.c.attempts + 1, updated_at=now)
                ).rowcount
                if won == 1:
                    row = conn.execute(select(j).where(j.c.id == job_id)).first()
                    claimed.append(_job(row))
        return claimed

    def finish(self, job_id: str, result: dict[str, Any] | None = None) -> None:
        self._close(job_id, "done", result=result)

    def fail(self, job_id: str, error: str, *, retry_in: timedelta | None) -> None:
        """A failed attempt: due again after ``retry_in``, or failed for good (None)."""
        now = self.clock.now()
        with self.engine.begin() as conn:
            values: dict[str, Any] = {"error": error[:2000], "updated_at": now,
                                      "locked_until": None}
            if retry_in is None:
                values["status"] = "failed"
            else:
                values.update(status="pending", due_at=now + retry_in)
            conn.execute(update(db.jobs).where(db.jobs.c.id == job_id,
                                               db.jobs.c.status == "running").values(**values))

    def snooze(self, job_id: str, due_at: datetime, result: dict[str, Any]) -> None:
        """A claimed job with nothing to do yet (a wait): pending again until ``due_at``."""
        with self.engine.begin() as conn:
            conn.execute(update(db.jobs).where(db.jobs.c.id == job_id,
                                               db.jobs.c.status == "running")
                         .values(status="pending", due_at=due_at, attempts=0, result=result,
                                 locked_until=None, updated_at=self.clock.now()))

    def cancel_running(self, job_id: str, reason: str) -> None:
        """A claimed job that turned out stale when it came due."""
        self._close(job_id, "cancelled", error=reason)

    def _close(self, job_id: str, status: str, *, result: dict[str, Any] | None = None,
               error: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(db.jobs)
                .where(db.jobs.c.id == job_id)
                .values(status=status, result=result, error=error, locked_until=None,
                        updated_at=self.clock.now())
            )

    def cancel(
        self,
        customer_id: str,
        *,
        tags: list[str] | None = None,
        journeys: list[str] | None = None,
        reason: str,
    ) -> list[Job]:
        """Cancel the customer's pending jobs with one of ``tags`` or ``journeys``."""
        j = db.jobs
        conds = []
        if tags:
            conds.append(j.c.tag.in_(tags))
        if journeys:
            conds.append(j.c.journey.in_(journeys))
        if not conds:
            return []
        now = self.clock.now()
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(j).where(j.c.customer_id == customer_id, j.c.status == "pending",
                                or_(*conds))
            ).all()
            cancelled = []
            for row in rows:
                won = conn.execute(
                    update(j).where(j.c.id == row.id, j.c.status == "pending")
                    .values(status="cancelled", error=reason[:2000], updated_at=now)
                ).rowcount
                if won:
                    cancelled.append(_job(row).model_copy(update={"status": "cancelled",
                                                                  "error": reason}))
        return cancelled

    def get(self, job_id: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(db.jobs).where(db.jobs.c.id == job_id)).first()
        return _job(row) if row else None

    def list(
        self,
        *,
        customer_id: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        limit: int = 200,
    ) -> list[Job]:
        query = select(db.jobs).order_by(db.jobs.c.created_at, db.jobs.c.id).limit(limit)
        if customer_id:
            query = query.where(db.jobs.c.customer_id == customer_id)
        if status:
            query = query.where(db.jobs.c.status == status)
        if kind:
            query = query.where(db.jobs.c.kind == kind)
        with self.engine.connect() as conn:
            return [_job(r) for r in conn.execute(query).all()]

    def fired_since(self, customer_id: str, journey: str, since: datetime) -> bool:
        """Whether ``journey`` fired for the customer since ``since`` (its cool-down)."""
        j = db.jobs
        with self.engine.connect() as conn:
            found = conn.execute(
                select(func.count()).select_from(j).where(
                    j.c.customer_id == customer_id, j.c.journey == journey,
                    j.c.kind == "journey", j.c.created_at >= since,
                )
            ).scalar_one()
        return bool(found)

    def next_due(self) -> datetime | None:
        with self.engine.connect() as conn:
            return aware(conn.execute(
                select(func.min(db.jobs.c.due_at)).where(db.jobs.c.status == "pending")
            ).scalar())

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.jobs.c.status, func.count()).group_by(db.jobs.c.status)
            ).all()
        return {status: n for status, n in rows}
