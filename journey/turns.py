"""Where a customer message enters: identity → profile → conversation → stored inbound → graph.

``Orchestrator.handle_message`` is what the API and ``journey chat`` call. It is idempotent per
(channel, external id): a repeated delivery returns the first result and runs nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from langgraph.types import Command
from pydantic import BaseModel, Field, model_validator

from agent.context import TurnServices
from agent.graph import DURABILITY, thread_config
from agent.nodes import run_approval
from core.domain import (
    CHANNEL_IDENTITY,
    Approval,
    Channel,
    Decision,
    Identity,
    Message,
    Verdict,
)
from core.effects import InboundAccepted
from core.errors import Conflict, NotFound
from core.identity import EmailAddress, PhoneNumber
from memory.jobs import Job
from memory.locks import ConversationLocks, LockTimeout
from memory.store import Store
from policy.privacy import mask, mask_all

log = logging.getLogger(__name__)

#: A message answered inline whose process dies mid-turn is decided by a worker this long
#: after it arrived (the turn job queued beside every inline turn; ``job_lease_s``).
TURN_LEASE = timedelta(seconds=120)
#: How long a repeated delivery waits for the first one's turn to finish (then 409).
WAIT_FOR_TURN_S = 15.0
#: Earlier messages of the conversation still waiting for their turn are answered first, as
#: far back as this.
LANE_LOOKBACK = timedelta(days=1)


class CustomerRef(BaseModel):
    """Who wrote: any identities we know them by. At least one is required."""

    email: EmailAddress | None = Field(None, max_length=320, examples=["dana@example.com"],
                                       description="Validated; compared lower-cased.")
    phone: PhoneNumber | None = Field(
        None, max_length=40, examples=["+14155550100"],
        description="E.164, or a national number read in JOURNEY_DEFAULT_PHONE_REGION.")
    web_chat_id: str | None = Field(None, max_length=200, examples=["wc_5f1c"])
    crm_id: str | None = Field(None, max_length=200)
    name: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _one_identity(self) -> CustomerRef:
        if not (self.email or self.phone or self.web_chat_id or self.crm_id):
            raise ValueError("give at least one identity: email, phone, web_chat_id or crm_id")
        return self

    def identities(self) -> list[Identity]:
        pairs = (
            ("email", self.email),
            ("phone", self.phone),
            ("web_chat_id", self.web_chat_id),
            ("crm_id", self.crm_id),
        )
        return [Identity(kind=k, value=v) for k, v in pairs if v]  # type: ignore[arg-type]


class InboundRequest(BaseModel):
    channel: Channel
    customer: CustomerRef
    text: str = Field(min_length=1, max_length=4000)
    external_id: str | None = Field(
        None, max_length=200, description="The channel's message id; repeats are deduplicated."
    )

    @model_validator(mode="after")
    def _identity_for_channel(self) -> InboundRequest:
        if not self.text.strip():
            raise ValueError("text is empty")
        needed = CHANNEL_IDENTITY[self.channel]
        if not any(i.kind == needed for i in self.customer.identities()):
            raise ValueError(f"{self.channel} messages need customer.{needed}")
        return self


class ActionSummary(BaseModel):
    tool: str
    outcome: str
    executed: bool
    reason_codes: list[str]
    arguments: dict[str, Any]
    result: dict[str, Any]
    modifications: list[str] = []
    #: For a modified action: what actually runs.
    final: dict[str, Any] | None = None
    deliver_at: datetime | None = None
    approval_id: str | None = None
    added_by_policy: bool = False


class TurnResult(BaseModel):
    customer_id: str
    conversation_id: str
    message_id: str
    duplicate: bool
    reply: str | None
    decision: Decision
    actions: list[ActionSummary]


class Accepted(BaseModel):
    """An inbound message stored and queued; a worker runs its turn."""

    customer_id: str
    conversation_id: str
    message_id: str
    #: The same (channel, external id) was accepted before: nothing new was stored or queued.
    duplicate: bool
    job_id: str | None = None


class TurnInProgress(Conflict):
    """The same message is being handled by another request right now."""

    def __init__(self, message_id: str) -> None:
        super().__init__(f"message {message_id} is being handled right now; retry shortly")
        self.message_id = message_id


class ApprovalNotFound(NotFound):
    """No approval with that id."""

    def __init__(self, approval_id: str) -> None:
        super().__init__(f"no approval {approval_id!r}")


class ApprovalConflict(Conflict):
    """The approval was already decided the other way."""


class Orchestrator:
    """Runs turns. One conversation's turns run one at a time and in arrival order, in every
    process (:class:`memory.locks.ConversationLocks`): the turn holding the conversation's
    lock first answers the earlier messages still waiting, then its own."""

    def __init__(self, services: TurnServices, graph: Any) -> None:
        if not isinstance(services.store, Store):
            raise TypeError("the turn runner needs the SQL store (memory.store.Store)")
        self.services = services
        self.graph = graph
        #: the whole store: identities, inbound messages and jobs, beside what a turn reads
        self.store: Store = services.store
        self.locks = ConversationLocks(self.store.engine)
        #: see :data:`TURN_LEASE` (``journey.runtime`` sets it from ``job_lease_s``)
        self.turn_lease = TURN_LEASE
        #: called after work is queued, so an in-process worker wakes at once
        self.on_enqueue: Callable[[], None] | None = None
        #: called with each new inbound message (the inbox records one that arrives while
        #: people own the conversation)
        self.on_inbound: list[Callable[[Message], object]] = []
        #: called with each new decision of a customer's message (a stage it moved can enrol
        #: the customer in a journey); a hook that fails is logged, the turn stands
        self.on_decided: list[Callable[[Decision], object]] = []
        #: LangGraph's durability for turns (:data:`agent.graph.DURABILITY`: one checkpoint,
        #: when the run ends); bench/ sets ``"async"`` to measure the step-by-step one
        self.durability = DURABILITY

    def _store_inbound(
        self, request: InboundRequest, meta: dict[str, Any] | None = None
    ) -> InboundAccepted:
        svc = self.services
        store = self.store
        # card numbers and the policy's secrets are masked before anything stores, embeds or
        # prompts them
        privacy = svc.policy.get().privacy
        # a customer first seen here has no known timezone: the policy's default applies
        # the person writing again after an erasure is a fresh profile (the audit notes it)
        profile, _ = store.resolve_customer(
            request.customer.identities(), svc.lifecycle.default_stage, timezone="",
            stages=svc.lifecycle.stages, on_erased="recreate",
        )
        if request.customer.name and not profile.name:
            store.update_customer(profile.id, name=mask(request.customer.name, privacy))
        conversation = store.open_conversation(profile.id)
        return store.accept_inbound(
            conversation, request.channel, mask(request.text.strip(), privacy),
            request.external_id, mask_all(meta, privacy) if meta else meta,
        )

    def accept(self, request: InboundRequest, *, meta: dict[str, Any] | None = None) -> Accepted:
        """Store an inbound message and queue its turn for a worker; returns at once.

        What provider webhooks call: they must answer fast, and a provider that retries (or
        delivers the same message 50 times at once) gets one stored message and one turn,
        because both the message and its job are unique by the channel's message id."""
        accepted = self._store_inbound(request, meta)
        message = accepted.message
        if accepted.is_new:
            self._inbound(message)
        job_id = None
        if accepted.turn_status == "pending":
            job_id, _ = self.store.jobs.enqueue(
                "turn", f"turn:{message.id}", {"message_id": message.id},
                customer_id=message.customer_id,
            )
            if self.on_enqueue is not None:
                self.on_enqueue()
        return Accepted(
            customer_id=message.customer_id, conversation_id=message.conversation_id,
            message_id=message.id, duplicate=not accepted.is_new, job_id=job_id,
        )

    def _inbound(self, message: Message) -> None:
        for hook in self.on_inbound:
            hook(message)

    def run_queued_turn(self, message_id: str) -> TurnResult:
        """A worker runs a queued turn (at most once: a recorded decision is returned)."""
        message = self.store.get_message(message_id)
        if message is None:
            raise LookupError(f"message {message_id} not found")
        decision, ran = self._run(message)
        return self._result(message, decision, duplicate=not ran)

    def run_proactive(self, job: Job) -> Decision:
        """A journey woke the agent: decide for the customer with no inbound message, through
        the same policy gate. At most once per job (a recorded decision is returned)."""
        store = self.store
        existing = store.decision_for_job(job.id)
        if existing is not None:
            return existing
        if not job.customer_id:
            raise LookupError(f"job {job.id} has no customer")
        conversation = store.open_conversation(job.customer_id)
        with self.locks.hold(conversation.id):
            existing = store.decision_for_job(job.id)
            if existing is not None:
                return existing
            state = self.graph.invoke(
                {
                    "conversation_id": conversation.id,
                    "customer_id": conversation.customer_id,
                    "inbound": None,
                    "trigger": {**job.payload, "job_id": job.id},
                    "decision_id": "dec_" + job.id.split("_", 1)[-1],
                    "started": time.perf_counter(),
                },
                config=thread_config(job.id),
                context=self.services, durability=self.durability,
            )
        return Decision.model_validate(state["decision"])

    def handle_message(self, request: InboundRequest) -> TurnResult:
        """Store the message and answer it now (``POST /v1/messages``).

        Beside the inline turn a turn job is queued, due after :attr:`turn_lease`: if this
        process dies mid-turn, a worker decides the message then (once: the decision is unique
        per message). A repeated delivery waits up to ``WAIT_FOR_TURN_S`` for the turn that is
        running (:class:`TurnInProgress` after that), and runs it itself if nobody is."""
        store = self.store
        accepted = self._store_inbound(request)
        message = accepted.message
        if not accepted.is_new:
            decision = store.decision_for_inbound(message.id)
            if decision is not None:
                return self._result(message, decision, duplicate=True)
        else:
            self._inbound(message)
        job_id, _ = store.jobs.enqueue(
            "turn", f"turn:{message.id}", {"message_id": message.id},
            due_at=self.services.clock.now() + self.turn_lease, customer_id=message.customer_id,
        )
        try:
            decision, _ = self._run(message, timeout_s=None if accepted.is_new
                                    else WAIT_FOR_TURN_S)
        except LockTimeout as exc:
            raise TurnInProgress(message.id) from exc
        store.jobs.finish(job_id, {"decision_id": decision.id, "inline": True})
        return self._result(message, decision, duplicate=not accepted.is_new)

    def _run(self, message: Message, *, timeout_s: float | None = None) -> tuple[Decision, bool]:
        """Answer ``message`` (at most once), holding its conversation's lock; the earlier
        messages of the conversation still waiting are answered first, in arrival order.
        Returns the decision and whether this call made it."""
        store = self.store
        with self.locks.hold(message.conversation_id, timeout_s):
            since = self.services.clock.now() - LANE_LOOKBACK
            for earlier in store.waiting_before(message, since):
                try:
                    self._turn(earlier)
                except Exception:  # its own job retries it; this message is not held up
                    log.exception("turn for %s (before %s) failed", earlier.id, message.id)
            existing = store.decision_for_inbound(message.id)
            if existing is not None:
                return existing, False
            return self._turn(message, checked=True), True

    def _turn(self, message: Message, *, checked: bool = False) -> Decision:
        """Run the graph on ``message`` (the caller holds the conversation's lock; ``checked``:
        and has just seen that it has no decision yet)."""
        existing = None if checked else self.store.decision_for_inbound(message.id)
        if existing is not None:
            return existing
        state = self.graph.invoke(
            {
                "conversation_id": message.conversation_id,
                "customer_id": message.customer_id,
                "inbound": message.model_dump(mode="json"),
                "decision_id": "dec_" + message.id.split("_", 1)[-1],
                "started": time.perf_counter(),
            },
            config=thread_config(message.id),
            context=self.services, durability=self.durability,
        )
        decision = Decision.model_validate(state["decision"])
        for hook in self.on_decided:
            try:
                hook(decision)
            except Exception:
                log.exception("after the decision %s: %r failed", decision.id, hook)
        return decision

    # --- approvals ---------------------------------------------------------------------------

    def decide_approval(
        self, approval_id: str, *, approve: bool, by: str, note: str | None = None
    ) -> Approval:
        """Approve or reject a held action. Idempotent: deciding again the same way returns the
        first result; the other way raises :class:`ApprovalConflict`. The side effect runs
        once, in the paused turn's ``execute_approval`` node."""
        store = self.store
        approval = store.get_approval(approval_id)
        if approval is None:
            raise ApprovalNotFound(approval_id)
        if approval.status == "pending":
            with self.locks.hold("approval:" + approval.inbound_message_id):
                approval = store.get_approval(approval_id) or approval
                if approval.status == "pending":
                    approval = self._resume(approval, approve=approve, by=by, note=note)
        wanted_approve = approval.status in ("approved", "blocked")
        if wanted_approve != approve:
            raise ApprovalConflict(
                f"approval {approval_id} was already {approval.status}"
                + (f" by {approval.decided_by}" if approval.decided_by else "")
            )
        return approval

    def _resume(self, approval: Approval, *, approve: bool, by: str, note: str | None) -> Approval:
        answer = {"approve": approve, "by": by, "note": note}
        config = thread_config(approval.inbound_message_id)
        snapshot = self.graph.get_state(config)
        if "await_approval" in (snapshot.next or ()):
            self.graph.invoke(Command(resume=answer), config=config, context=self.services,
                              durability=self.durability)
        else:
            # the turn was recorded but its pause was never checkpointed (the process died
            # between the two): run the same node body directly; the store still guards it
            run_approval(self.services, approval.id, answer)
        stored = self.store.get_approval(approval.id)
        if stored is None:  # pragma: no cover - it existed a moment ago
            raise ApprovalNotFound(approval.id)
        return stored

    @staticmethod
    def _result(message: Message, decision: Decision, *, duplicate: bool) -> TurnResult:
        return TurnResult(
            customer_id=decision.customer_id,
            conversation_id=decision.conversation_id,
            message_id=message.id,
            duplicate=duplicate,
            reply=decision.reply,
            decision=decision,
            actions=[_summary(v, decision) for v in decision.verdicts],
        )


def _summary(verdict: Verdict, decision: Decision) -> ActionSummary:
    action = decision.proposed[verdict.action_index]
    return ActionSummary(
        tool=verdict.tool,
        outcome=verdict.outcome,
        executed=verdict.executed,
        reason_codes=verdict.reason_codes,
        arguments=action.model_dump(exclude={"tool"}),
        result=verdict.result,
        modifications=list(verdict.modifications),
        final={k: v for k, v in verdict.final.items() if k != "tool"} if verdict.final else None,
        deliver_at=verdict.deliver_at,
        approval_id=verdict.approval_id,
        added_by_policy=verdict.added_by_policy,
    )
