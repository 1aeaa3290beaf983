"""The worker: queued turns, journey wake-ups and the outbox relay, from the database.

``journey serve`` runs ``JOURNEY_WORKERS`` of these as threads beside the API; ``journey
worker`` runs more in other processes. Every piece of work is claimed with a lease (``FOR
UPDATE SKIP LOCKED`` on PostgreSQL), so any number of workers can share one database and each
job or message is handled by one of them; a worker that dies leaves its lease to run out.

One pass (:meth:`Worker.run_once`):

1. due jobs: a queued turn runs the agent on its message; a journey job is re-evaluated (its
   journey gone or disabled, a newer signal in ``stale_when``, a person owning the
   conversation: cancelled with the reason) and otherwise wakes the agent proactively;
2. due outbox rows: every message, a retry or a replayed dead letter too, is checked by the
   policy again right before it is sent (:func:`policy.later.recheck_later`: consent and the
   open handoff as they are now, quiet hours, caps, content); a revoked channel carries only
   the opt-out confirmation. Then the channel's adapter sends it with its idempotency key.
   A transient failure is retried with exponential backoff and jitter; after
   ``outbox_max_attempts`` (or a permanent failure) it is dead-lettered, and
   ``journey outbox replay`` puts it back.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agent.service import Orchestrator
from channels.base import ChannelAdapter, Delivery, PermanentError, TransientError
from core.clock import Clock
from core.domain import Channel, Message, SendMessage
from core.hub import JOBS_KEY, Hub
from core.settings import Settings
from journey.handoffs import HandoffService
from journey.jobs import MAX_JOB_ATTEMPTS, Job
from journey.journeys import JourneysProvider
from journey.outbox import OutboxRow, backoff
from journey.store import OPEN_HANDOFF, Store
from journey.webhooks import HandoffWebhooks
from policy.later import OPT_OUT_CONFIRMATION, LaterSend, Recheck, by_person, recheck_later
from policy.loader import PolicyProvider

log = logging.getLogger(__name__)
#: how often (by the clock) a worker looks for handoffs past their SLA
SLA_CHECK_S = 15.0



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
    #: the inbox, whose SLA timers the worker watches (None: not watched)
    handoffs: HandoffService | None = None
    rng: random.Random = field(default_factory=random.Random)
    _sla_checked: datetime | None = None

    # --- the loop -------------------------------------------------------------------------

    def run_once(self) -> int:
        """One pass over due jobs and due messages; returns how many it handled."""
        return self.run_jobs() + self.relay() + self.check_slas()

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
        if job.kind == "journey":
            stale = self._stale(job)
            if stale:
                return {"cancelled": stale}
            decision = self.orchestrator.run_proactive(job)
            return {"decision_id": decision.id}
        raise ValueError(f"unknown job kind {job.kind!r}")

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

    # --- the outbox relay -----------------------------------------------------------------

    def relay(self, limit: int = 20) -> int:
        queue = self.store.outbox_queue
        lease = timedelta(seconds=self.settings.job_lease_s)
        rows = queue.claim(limit=limit, lease=lease)
        for row in rows:
            self._deliver(row)
        return len(rows)

    def _recheck(self, row: OutboxRow, conversation_id: str) -> Recheck:
        """The policy on this message now: the customer's consent and the open handoff as they
        are at send time, quiet hours, caps (this row not counted twice), the content rules."""
        meta = row.meta or {}
        send = LaterSend(
            kind="delivery",
            action=SendMessage(channel=row.channel,  # type: ignore[arg-type]
                               text=row.text, purpose=row.purpose),  # type: ignore[arg-type]
            customer_id=row.customer_id, conversation_id=conversation_id,
            is_reply=bool(row.is_reply), outbox_id=row.id, decision_id=row.decision_id,
            opt_out_confirmation=bool(meta.get(OPT_OUT_CONFIRMATION)),
            by_person=by_person(meta),
        )
        return recheck_later(self.policy.get(), self.orchestrator.services.lifecycle.stages,
                             self.store, send, self.clock.now())

    def _deliver(self, row: OutboxRow) -> None:
        queue = self.store.outbox_queue
        channel: Channel = row.channel  # type: ignore[assignment]
        message = self.store.get_message(row.message_id)
        check = self._recheck(row, message.conversation_id if message else "")
        verdict, profile = check.verdict, check.profile
        if profile is None:
            queue.mark_dead(row.id, f"customer {row.customer_id} not found")
            return
        codes = ", ".join(verdict.reason_codes)
        if check.action is None:
            why = f"{codes}: {verdict.detail}" if verdict.detail else codes
            if "channel_unavailable" in verdict.reason_codes:
                self._retry(row, f"policy: {why}")  # the channel is marked down: wait
            else:
                queue.mark_cancelled(row.id, why)
            return
        if set(verdict.modifications) - {"defer"}:
            # the policy in force would change the text or the channel: it does not go out
            # altered behind the transcript's back
            queue.mark_cancelled(row.id, f"{codes}: {verdict.detail}".rstrip(": "))
            return
        if check.deliver_at is not None and check.deliver_at > self.clock.now():
            queue.mark_deferred(row.id, check.deliver_at, f"{codes}: {verdict.detail}")
            return
        adapter = self.adapters.get(channel)
        if adapter is None:
            queue.mark_dead(row.id, f"no transport for {channel}")
            return
        try:
            result = adapter.send(self._delivery(row, profile.first_name, message))
        except PermanentError as exc:
            queue.mark_dead(row.id, f"permanent: {exc}")
            return
        except Exception as exc:  # TransientError, or a bug in an adapter: retry, then DLQ
            self._retry(row, f"{'transient' if isinstance(exc, TransientError) else 'error'}: "
                             f"{exc}")
            return
        queue.mark_sent(row.id, provider_message_id=result.provider_message_id,
                        provider_status=result.provider_status, meta=result.meta)
        self.hub.notify(f"customer:{row.customer_id}")

    def _retry(self, row: OutboxRow, error: str) -> None:
        """Try again later (exponential backoff with jitter), or dead-letter after the last
        attempt."""
        queue = self.store.outbox_queue
        if row.attempts >= self.settings.outbox_max_attempts:
            queue.mark_dead(row.id, f"{error} (after {row.attempts} attempts)")
            return
        delay = backoff(row.attempts, self.settings.outbox_backoff_base_s,
                        self.settings.outbox_backoff_max_s, self.rng)
        queue.mark_retry(row.id, error, self.clock.now() + timedelta(seconds=delay))

    def _delivery(self, row: OutboxRow, first_name: str | None,
                  message: Message | None) -> Delivery:
        meta = row.meta or {}
        subject, in_reply_to, references = meta.get("subject"), None, []
        conversation_id = message.conversation_id if message else ""
        if row.channel == "email":
            thread = self.store.last_inbound_meta(row.customer_id, "email")
            email = thread.get("email", {}) if thread else {}
            if email.get("message_id"):
                in_reply_to = email["message_id"]
                references = [*email.get("references", []), email["message_id"]][-10:]
                if row.is_reply and not subject:
                    subject = email.get("subject")
        return Delivery(
            outbox_id=row.id, message_id=row.message_id, idempotency_key=row.idempotency_key,
            customer_id=row.customer_id, conversation_id=conversation_id,
            channel=row.channel,  # type: ignore[arg-type]
            address=row.address, text=row.text,
            purpose=row.purpose,  # type: ignore[arg-type]
            is_reply=bool(row.is_reply), attempt=row.attempts, subject=subject,
            in_reply_to=in_reply_to if row.is_reply else None,
            references=references if row.is_reply else [],
            first_name=first_name, company=self.company,
        )


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
