"""Transactional messages (``POST /v1/notifications``): a template from
``prompts/notifications.yaml`` rendered for one customer and sent through the same policy gate,
tool and turn transaction as every other message, then delivered by the relay.

    request ─► idempotency key (replay, or 409 for another body) ─► template, customer, channel
            ─► variables typed, masked, rendered ─► policy gate (PolicyEngine.arbitrate)
            ─► send_message tool (the outbox row) ─► decision + effects in one transaction
            ─► the relay delivers it, re-checking the policy at send time

The gate sees a proactive message from the system (``origin="system"``), so a transactional
template stays transactional: consent follows the customer's ``service`` consent on the channel
(``contact.consent.purposes.transactional`` in the policy), frequency caps do not count it and
quiet hours hold only the purposes the policy lists. A request that names its channel gets that
channel or nothing (suppressed with the policy's reason); without one, the policy may switch it
(no address, no consent) to another channel the template allows, to no other.

A notification is idempotent by key: the first request's answer is stored with the key and a
repeat returns it (nothing is sent twice); the same key with another body is a conflict. The
decision is unique per notification, so a request retried after its process died mid-way
finds the decision already made.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    StringConstraints,
    model_validator,
)

from core.clock import Clock, IdFactory
from core.domain import (
    Approval,
    BrainInfo,
    Channel,
    CustomerProfile,
    Decision,
    SendMessage,
    Verdict,
)
from core.effects import TurnEffects
from core.errors import Conflict, Invalid, NotFound
from core.ports import MemoryRecord, VectorMemory
from journey.customers import Identities
from memory.notifications import NotificationRow
from memory.store import Store
from policy.contact import SentRecord
from policy.engine import Facts, PolicyEngine, ledger_horizon
from policy.escalation import MessageFacts
from policy.lifecycle import Lifecycle
from policy.loader import PolicyProvider
from policy.notifications import (
    NotificationTemplatesProvider,
    Strict,
    Template,
    check_variables,
)
from policy.privacy import mask_all
from policy.rules_consent import channel_problem
from tools import ToolContext, ToolError, run_tool

#: How long a request holds its notification while it decides (then a retry may take over).
LEASE = timedelta(seconds=120)

Status = Literal["queued", "scheduled", "held", "suppressed"]


# --- the request and the answer --------------------------------------------------------------

IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=200,
                                                  pattern=r"^[\x21-\x7e]+$")]


class NotificationRequest(Strict):
    """A transactional message to one customer."""

    template: str = Field(min_length=1, max_length=80, examples=["order_shipped"],
                          description="A template of prompts/notifications.yaml.")
    customer_id: str | None = Field(None, min_length=1, max_length=40)
    customer: Identities | None = Field(
        None, description="Any identity of the customer (instead of customer_id).")
    channel: Channel | None = Field(
        None, description="One of the template's channels. Default: the customer's "
        "channel_preference when the template allows it, else the template's first channel.")
    variables: dict[str, Any] = Field(default_factory=dict,
                                      examples=[{"order_id": "A-10042"}])
    idempotency_key: IdempotencyKey | None = Field(
        None, description="Or the Idempotency-Key header. The same key returns the first "
        "answer and sends nothing again; with another body it is a 409.")

    @model_validator(mode="after")
    def _one_customer(self) -> NotificationRequest:
        if (self.customer_id is None) == (self.customer is None):
            raise ValueError("give exactly one of customer_id or customer")
        return self


class NotificationResult(BaseModel):
    """What became of a notification."""

    id: str
    #: queued: in the outbox, due now; scheduled: deferred by the policy (deliver_at);
    #: held: waits for a person's approval (approval_id); suppressed: the policy refused it
    status: Status
    customer_id: str
    template: str
    purpose: str
    channel: Channel
    decision_id: str
    outbox_id: str | None = None
    message_id: str | None = None
    approval_id: str | None = None
    reason_codes: list[str]
    detail: str = ""
    deliver_at: datetime | None = None
    idempotency_key: str | None = None
    created_at: datetime
    #: this answer was stored by an earlier request with the same key
    replayed: bool = False


class Delivery(BaseModel):
    """The outbox row as the relay left it."""

    status: str
    attempts: int
    sent_at: datetime | None = None
    last_error: str | None = None
    provider_message_id: str | None = None
    provider_status: str | None = None
    subject: str | None = None
    text: str


class NotificationView(NotificationResult):
    delivery: Delivery | None = None


# --- the service -----------------------------------------------------------------------------


class NotificationService:
    def __init__(
        self, *, store: Store, policy: PolicyProvider, lifecycle: Lifecycle,
        templates: NotificationTemplatesProvider, memory: VectorMemory, clock: Clock,
        ids: IdFactory, company: str = "",
    ) -> None:
        self.store = store
        self.policy = policy
        self.lifecycle = lifecycle
        self.templates = templates
        self.memory = memory
        self.clock = clock
        self.ids = ids
        self.company = company

    def send(self, request: NotificationRequest, *, header_key: str | None = None,
             by: str = "api") -> NotificationResult:
        """Decide and queue one notification (see the module docstring)."""
        key = request.idempotency_key
        if header_key is not None and key is not None and header_key != key:
            raise Invalid("idempotency_key: differs from the Idempotency-Key header")
        key = key or header_key
        privacy = self.policy.get().privacy
        masked = mask_all(request.variables, privacy)
        digest = _digest(request, masked)
        row = self.store.notifications.by_key(key) if key is not None else None
        if row is not None:
            replay = self._replay(row, digest)
            if replay is not None:
                return replay  # else this request took over one whose process died
        name, template = self._template(request.template)
        profile = self._customer(request)
        channel = self._channel(name, template, profile, request.channel)
        values = check_variables(name, template, masked)
        values |= {"first_name": profile.first_name or "there", "company": self.company}
        text, subject = template.render(values)
        if row is None:
            row, created = self.store.notifications.reserve(
                id=self.ids("ntf"), idempotency_key=key, request_hash=digest,
                customer_id=profile.id, template=name, lease=LEASE)
            if not created:  # another request with this key got there first
                replay = self._replay(row, digest)
                if replay is not None:
                    return replay
        return self._decide(row.id, name, template, profile, channel, text, subject, key, by,
                            fixed=request.channel is not None)

    def get(self, notification_id: str) -> NotificationView:
        row = self.store.notifications.get(notification_id)
        if row is None or row.answer is None:
            raise NotFound(f"no notification {notification_id!r}")
        view = NotificationView.model_validate(row.answer)
        view.customer_id = row.customer_id  # after a merge: the survivor
        outbox = self.store.outbox_queue.get(row.outbox_id) if row.outbox_id else None
        if outbox is not None:
            view.delivery = Delivery(
                status=outbox.status, attempts=outbox.attempts, sent_at=outbox.sent_at,
                last_error=outbox.last_error, provider_message_id=outbox.provider_message_id,
                provider_status=outbox.provider_status,
                subject=(outbox.meta or {}).get("subject"), text=outbox.text)
        return view

    # --- steps --------------------------------------------------------------------------------

    def _replay(self, row: NotificationRow, digest: str) -> NotificationResult | None:
        """The stored answer for a repeated key; None when this caller should decide it (the
        first request died mid-way and its lease ran out)."""
        if row.request_hash != digest:
            raise Conflict(f"idempotency key {row.idempotency_key!r} was used for a different "
                           f"request (notification {row.id})")
        if row.answer is not None:
            return NotificationResult.model_validate({**row.answer, "replayed": True})
        if self.store.notifications.take_over(row.id, LEASE):
            return None
        raise Conflict(f"notification {row.id} with this idempotency key is being sent right "
                       "now; retry shortly")

    def _template(self, name: str) -> tuple[str, Template]:
        templates = self.templates.get().templates
        template = templates.get(name)
        if template is None:
            raise Invalid(f"template: no template {name!r} (there are: "
                          f"{', '.join(sorted(templates))})")
        return name, template

    def _customer(self, request: NotificationRequest) -> CustomerProfile:
        if request.customer_id is not None:
            live = self.store.live_customer_id(request.customer_id)
            profile = self.store.get_customer(live) if live else None
            if profile is None:
                raise NotFound(f"customer_id: no customer {request.customer_id!r}")
            return profile
        identities = request.customer.all() if request.customer else []
        found = {p.id: p for i in identities if (p := self.store.find_customer(i))}
        if not found:
            raise NotFound("customer: no customer with " + ", ".join(
                f"{i.kind} {i.value}" for i in identities))
        if len(found) > 1:
            raise Invalid("customer: these identities belong to different customers: "
                          + ", ".join(sorted(found)))
        return next(iter(found.values()))

    @staticmethod
    def _channel(name: str, template: Template, profile: CustomerProfile,
                 asked: Channel | None) -> Channel:
        if asked is not None:
            if asked not in template.channels:
                raise Invalid(f"channel: template {name} is sent on "
                              f"{', '.join(template.channels)}, not {asked}")
            return asked
        preferred = profile.channel_preference
        return preferred if preferred in template.channels else template.channels[0]

    def _decide(
        self, notification_id: str, name: str, template: Template, profile: CustomerProfile,
        channel: Channel, text: str, subject: str | None, key: str | None, by: str, *,
        fixed: bool,
    ) -> NotificationResult:
        """The gate, the tool and the record, as a proactive turn of the system's."""
        started = time.perf_counter()
        store, policy = self.store, self.policy.get()
        now = self.clock.now()
        conversation = store.open_conversation(profile.id)
        action = SendMessage(channel=channel, text=text, purpose=template.purpose)
        ledger = [SentRecord(e.channel, e.purpose, e.at, e.is_reply)
                  for e in store.ledger(profile.id, since=now - ledger_horizon(policy))]
        result = PolicyEngine(policy).arbitrate([action], Facts(
            profile=profile,
            message=MessageFacts(text="", intent="notification", confidence=1.0,
                                 sentiment="neutral", stage=profile.lifecycle_stage),
            inbound_channel=None, now=now, stages=self.lifecycle.stages,
            active_handoff=store.active_handoff(conversation.id), ledger=ledger,
            summary=f"notification {name}", origin="system",
        ))
        verdict = result.verdicts[0]
        final = result.approved.get(0)
        held = result.held.get(0)
        decided = final or held
        if "switch_channel" in verdict.modifications and isinstance(decided, SendMessage) and (
                fixed or decided.channel not in template.channels):
            # the caller named the channel, or the template's text may not go where the
            # policy would switch it: the policy's reason for the channel asked stands
            code, detail = channel_problem(policy, profile, channel, action.purpose,
                                           is_reply=False) or ("channel_unavailable", "")
            codes = [code] if fixed else [code, "template_channels"]
            if not fixed:
                detail += f"; no other channel of template {name} may carry it"
            verdict.outcome, verdict.step, verdict.reason_codes = "deny", "eligibility", codes
            verdict.detail, verdict.modifications, verdict.final = detail, [], None
            verdict.deliver_at = final = held = None
        decision_id = self.ids("dec")
        effects = TurnEffects()
        meta: dict[str, Any] = {"notification_id": notification_id}
        if subject is not None:
            meta["subject"] = subject
        if held is not None:
            verdict.approval_id = self.ids("apv")
            effects.approvals.append(Approval(
                id=verdict.approval_id, decision_id=decision_id,
                conversation_id=conversation.id, customer_id=profile.id,
                inbound_message_id=notification_id, action=held.model_dump(mode="json"),
                reason_codes=verdict.reason_codes, created_at=now,
                deliver_at=verdict.deliver_at, is_reply=False))
        elif final is not None:
            ctx = ToolContext(
                profile=profile, conversation=conversation, inbound_channel=None,
                inbound_message_id=notification_id, decision_id=decision_id, clock=self.clock,
                ids=self.ids, effects=effects, deliver_at=verdict.deliver_at, meta=meta)
            try:
                verdict.result = run_tool(final, ctx)
                verdict.executed = True
            except ToolError as exc:
                verdict.outcome, verdict.step = "deny", "execution"
                verdict.reason_codes.append("tool_error")
                verdict.detail = str(exc)
        trigger: dict[str, Any] = {"notification": notification_id, "template": name, "by": by,
                   "idempotency_key": key}
        if subject is not None:
            trigger["subject"] = subject
        decision = Decision(
            id=decision_id, conversation_id=conversation.id, customer_id=profile.id,
            inbound_message_id=None, job_id=notification_id, trigger=trigger,
            intent="notification", intent_confidence=1.0, stage=profile.lifecycle_stage,
            previous_stage=profile.lifecycle_stage, sentiment="neutral",
            proposed=list(result.actions), verdicts=result.verdicts,
            reasons=[f"notification:{name}",
                     *(f"{v.tool}:{c}" for v in result.verdicts for c in v.reason_codes)],
            reply=None, brain=BrainInfo(name="rules", model=f"notification:{name}"),
            latency_ms=round((time.perf_counter() - started) * 1000, 2), created_at=now,
            inputs=result.inputs, policy_version=policy.version,
        )
        stored = store.commit_turn(decision, effects)
        if stored.id == decision.id:
            self.memory.add([
                MemoryRecord(id=o.message_id, customer_id=profile.id,
                             conversation_id=conversation.id, channel=o.channel,
                             direction="outbound", text=o.text, created_at=now)
                for o in effects.outbound
            ])
        answer = _answer(notification_id, stored, name, template, channel, key)
        store.notifications.finish(
            notification_id, status=answer.status, decision_id=stored.id,
            outbox_id=answer.outbox_id, answer=answer.model_dump(mode="json"))
        return answer


def _answer(notification_id: str, decision: Decision, name: str, template: Template,
            asked: Channel, key: str | None) -> NotificationResult:
    verdict: Verdict = decision.verdicts[0]
    final = verdict.final or {}
    status: Status
    if verdict.approval_id:
        status = "held"
    elif verdict.executed:
        status = "scheduled" if verdict.deliver_at else "queued"
    else:
        status = "suppressed"
    return NotificationResult(
        id=notification_id, status=status, customer_id=decision.customer_id, template=name,
        purpose=str(final.get("purpose", template.purpose)),
        channel=final.get("channel", asked), decision_id=decision.id,
        outbox_id=verdict.result.get("outbox_id"), message_id=verdict.result.get("message_id"),
        approval_id=verdict.approval_id, reason_codes=verdict.reason_codes,
        detail=verdict.detail, deliver_at=verdict.deliver_at, idempotency_key=key,
        created_at=decision.created_at,
    )


def _digest(request: NotificationRequest, masked: Any) -> str:
    """What identifies a request for its idempotency key: every field but the key, with the
    variables as masked (no card number is hashed and kept)."""
    body = request.model_dump(mode="json", exclude={"idempotency_key", "variables"})
    body["variables"] = masked
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


__all__: Sequence[str] = (
    "NotificationRequest", "NotificationResult", "NotificationService", "NotificationView",
)
