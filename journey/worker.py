"""The worker: queued turns, journey wake-ups and the outbox relay, from the database.

``journey serve`` runs ``JOURNEY_WORKERS`` of these as threads beside the API; ``journey
worker`` runs more in other processes. Every piece of work is claimed with a lease (``FOR
UPDATE SKIP LOCKED`` on PostgreSQL), so any number of workers can share one database and each
job or message is handled by one of them; a worker that dies leaves its lease to run out.

One pass (:meth:`Worker.run_once`):

1. due jobs: a queued turn runs the agent on its message; a journey job is re-evaluated (its
   journey gone or disabled, a newer signal in ``stale_when``, a person owning the
   conversation: cancelled with the reason) and otherwise wakes the agent proactively;
2. due outbox rows: the relay (:mod:`journey.relay`, where a message leaves) checks each with
   the policy again and hands it to its channel's adapter;
3. every ``SLA_CHECK_S``: handoffs past their SLA;
4. at start, then every ``RETENTION_CHECK_S``: what is older than ``JOURNEY_RETENTION_DAYS``.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from channels.base import ChannelAdapter
from core.clock import Clock
from core.domain import Channel
from core.hub import JOBS_KEY, Hub
from core.settings import Settings
from journey.erasure import ErasureService
from journey.handoffs import HandoffService
from journey.relay import Relay
from journey.stepper import JourneyStepper
from journey.turns import Orchestrator
from journey.webhooks import CrmWebhooks, HandoffWebhooks
from memory.jobs import MAX_JOB_ATTEMPTS, Job
from memory.outbox import backoff
from memory.store import OPEN_HANDOFF, Store
from policy.journeys import JourneysProvider
from policy.loader import PolicyProvider

log = logging.getLogger(__name__)
#: how often (by the clock) a worker looks for handoffs past their SLA
SLA_CHECK_S = 15.0
#: how often (by the clock) a worker purges what is older than the retention
RETENTION_CHECK_S = 3600.0



@dataclass
class Worker:
    name: str
    store: Store
    orchestrator: Orchestrator
    adapters: Mapping[Channel, ChannelAdapter]
    policy: PolicyProvider
    journeys: JourneysProvider
    settings: Settings
    clock: Clock
    hub: Hub
    company: str = ""
    #: delivers signed handoff webhooks (None: none configured)
    webhooks: HandoffWebhooks | None = None
    #: delivers the CRM sync out (None: none configured)
    crm_webhooks: CrmWebhooks | None = None
    #: the inbox, whose SLA timers the worker watches (None: not watched)
    handoffs: HandoffService | None = None
    #: purges what is older than ``retention_days`` (None, or 0 days: nothing is purged)
    erasure: ErasureService | None = None
    #: enrols and steps the customers of journeys with steps (None: those jobs fail)
    stepper: JourneyStepper | None = None
    _retention_checked: datetime | None = None
    rng: random.Random = field(default_factory=random.Random)
    _sla_checked: datetime | None = None
    _relay: Relay = field(init=False)

    def __post_init__(self) -> None:
        self._relay = Relay(
            store=self.store, adapters=self.adapters, policy=self.policy,
            stages=lambda: self.orchestrator.services.lifecycle.stages, settings=self.settings,
            clock=self.clock, hub=self.hub, company=self.company, rng=self.rng,
        )

    # --- the loop -------------------------------------------------------------------------

    def run_once(self) -> int:
        """One pass over due jobs and due messages; returns how many it handled."""
        return self.run_jobs() + self.relay() + self.check_slas() + self.purge_expired()

    def purge_expired(self) -> int:
        """When the worker starts, then every ``RETENTION_CHECK_S`` of the clock: purge what
        is older than the retention (``journey.erasure``); returns how much was purged."""
        if self.erasure is None or self.erasure.retention_days <= 0:
            return 0
        now = self.clock.now()
        if self._retention_checked is not None and \
                (now - self._retention_checked).total_seconds() < RETENTION_CHECK_S:
            return 0
        self._retention_checked = now
        counts = self.erasure.purge_expired()
        return counts.get("messages", 0) + counts.get("events", 0)

    def check_slas(self) -> int:
        """Every ``SLA_CHECK_S`` of the clock: record handoffs past their SLA (once each)."""
        if self.handoffs is None:
            return 0
        now = self.clock.now()
        if self._sla_checked is not None and (now - self._sla_checked).total_seconds() \
                < SLA_CHECK_S:
            return 0
        self._sla_checked = now
        return self.handoffs.check_slas()

    def run_forever(self, stop: threading.Event) -> None:
        log.info("worker %s started", self.name)
        while not stop.is_set():
            seen = self.hub.version(JOBS_KEY)
            try:
                handled = self.run_once()
            except Exception:  # the loop must survive a database hiccup
                log.exception("worker %s: pass failed", self.name)
                handled = 0
            if not handled and not stop.is_set():
                self.hub.wait(JOBS_KEY, seen, self.settings.worker_poll_s)
        log.info("worker %s stopped", self.name)

    # --- jobs -------------------------------------------------------------------------------

    def run_jobs(self, limit: int = 10) -> int:
        lease = timedelta(seconds=self.settings.job_lease_s)
        jobs = self.store.jobs.claim(self.name, limit=limit, lease=lease)
        for job in jobs:
            try:
                result = self._job(job)
            except Exception as exc:
                log.exception("job %s (%s) failed", job.id, job.kind)
                retry = None if job.attempts >= MAX_JOB_ATTEMPTS else timedelta(
                    seconds=backoff(job.attempts, 2.0, 300.0, self.rng))
                self.store.jobs.fail(job.id, f"{type(exc).__name__}: {exc}", retry_in=retry)
                if retry is None and job.kind == "turn":
                    # given up: the conversation's later messages no longer wait for it
                    self.store.fail_turn(str(job.payload["message_id"]))
                continue
            if result.get("cancelled"):
                self.store.jobs.cancel_running(job.id, str(result["cancelled"]))
            elif result.get("snooze"):
                self.store.jobs.snooze(job.id, datetime.fromisoformat(str(result["snooze"])),
                                       result)
            else:
                self.store.jobs.finish(job.id, result)
            if job.customer_id:
                self.hub.notify(f"customer:{job.customer_id}")
        return len(jobs)

    def _job(self, job: Job) -> dict[str, Any]:
        if job.kind == "turn":
            turn = self.orchestrator.run_queued_turn(str(job.payload["message_id"]))
            return {"decision_id": turn.decision.id, "duplicate": turn.duplicate}
        if job.kind == "webhook":
            if self.webhooks is None:
                return {"cancelled": "no handoff webhook is configured any more"}
            return self.webhooks.deliver(str(job.payload["event_id"]))
        if job.kind == "sync":
            if self.crm_webhooks is None:
                return {"cancelled": "no CRM webhook is configured any more"}
            return self.crm_webhooks.deliver(job.payload)
        if job.kind == "enrolment":
            return self._stepper().step(job)
        if job.kind == "journey":
            stale = self._stale(job)
            if stale:
                return {"cancelled": stale}
            journey = self.journeys.get().get(job.journey or "")
            if journey is not None and journey.multi_step:
                return self._stepper().enrol(job)
            decision = self.orchestrator.run_proactive(job)
            return {"decision_id": decision.id}
        raise ValueError(f"unknown job kind {job.kind!r}")

    def _stepper(self) -> JourneyStepper:
        if self.stepper is None:
            raise RuntimeError("this worker has no journey stepper")
        return self.stepper

    def _stale(self, job: Job) -> str | None:
        """Why a due journey job should not run any more, or None."""
        journey = self.journeys.get().get(job.journey or "")
        if journey is None or not journey.enabled:
            return f"stale: journey {job.journey} is no longer defined or enabled"
        customer_id = job.customer_id or ""
        profile = self.store.get_customer(customer_id)
        if profile is None:
            return f"stale: customer {customer_id} is gone"
        rule = journey.stale_when
        if rule.stage_in and profile.lifecycle_stage in rule.stage_in:
            return f"stale: the customer is now in {profile.lifecycle_stage}"
        if rule.events:
            since = job.created_at
            newer = [e for e in self.store.recent_events(profile.id, since=since)
                     if e.type in rule.events]
            if newer:
                e = newer[-1]
                return f"stale: {e.type} ({e.id}) at {e.occurred_at.isoformat()} came after"
        if rule.handoff_open:
            handoff = next((h for h in self.store.handoffs(profile.id)
                            if h.status in OPEN_HANDOFF), None)
            if handoff is not None:
                return f"stale: a person owns the conversation (handoff {handoff.id})"
        return None

    # --- the outbox relay ----------------------------------------------------------------

    def relay(self, limit: int = 20) -> int:
        """Deliver due outbox messages (:class:`journey.relay.Relay`)."""
        return self._relay.run(limit)


class WorkerPool:
    """``n`` worker threads sharing one container; stopped together."""

    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=w.run_forever, args=(self._stop,), daemon=True,
                             name=f"journey-{w.name}")
            for w in workers
        ]

    def start(self) -> WorkerPool:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for w in self.workers:
            w.hub.notify(JOBS_KEY)
        for t in self._threads:
            t.join(timeout)
