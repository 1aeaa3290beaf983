"""The outbox relay: where a message LEAVES.

Every outgoing message was written to the outbox in the same transaction as the decision that
produced it (or the person's reply, or the approval). The relay claims due rows with a lease
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so any number of workers share the outbox and each
row is delivered by one of them. For each row:

1. the policy decides again, right before the send (:func:`policy.later.recheck_later`):
   consent and the open handoff as they are now, quiet hours, caps (this row not counted
   twice), the content rules; a revoked channel carries only the opt-out confirmation. A
   refused message is cancelled with its reason codes; one the policy in force would alter
   is cancelled, not altered; marketing that came due at night is deferred;
2. the channel's adapter (``channels/``) sends it with its idempotency key;
3. a transient failure is retried with exponential backoff and jitter; after
   ``outbox_max_attempts`` (or a permanent failure) it is dead-lettered, and
   ``journey outbox replay`` puts it back.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from channels.base import ChannelAdapter, Delivery, PermanentError, TransientError
from core.clock import Clock
from core.domain import Channel, Message, SendMessage
from core.hub import Hub
from core.settings import Settings
from memory.outbox import OutboxRow, backoff
from memory.store import Store
from policy.later import OPT_OUT_CONFIRMATION, LaterSend, Recheck, by_person, recheck_later
from policy.loader import PolicyProvider


@dataclass
class Relay:
    store: Store
    adapters: Mapping[Channel, ChannelAdapter]
    policy: PolicyProvider
    #: the lifecycle's stages now (the policy's stage rules read them)
    stages: Callable[[], Sequence[str]]
    settings: Settings
    clock: Clock
    hub: Hub
    company: str = ""
    rng: random.Random = field(default_factory=random.Random)

    def run(self, limit: int = 20) -> int:
        """Claim up to ``limit`` due messages and deliver each; how many were claimed."""
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
        return recheck_later(self.policy.get(), self.stages(),
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
