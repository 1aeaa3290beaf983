"""One policy re-check for every send that happens after its decision.

A message can leave long after the policy first allowed it: the relay retries it, an operator
replays it from the dead-letter queue, a person approves a held action, a person replies from
the inbox. Between the decision and the send the customer may have opted out, a person may have
taken the conversation over, the night may have come. So every one of these goes through
:func:`recheck_later`, which reads the profile, the open handoff and the messages already sent
*as they are now* and runs the same engine again:

=============  ===========================================================================
``approval``   a held action a person approved (``run_approval``)
``person``     a person's reply from the inbox, before it is queued
``delivery``   the relay, right before the provider call: any queued outbox row
=============  ===========================================================================

For a delivery the only message allowed through a channel the customer opted out of is the one
confirmation of that opt-out (flagged by code on its outbox row, never by the model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from core.domain import (
    Channel,
    CustomerProfile,
    Handoff,
    ProposedAction,
    Purpose,
    SendMessage,
    Verdict,
)
from policy.contact import SentRecord
from policy.engine import Facts, PolicyEngine, ledger_horizon
from policy.escalation import MessageFacts
from policy.model import Policy

LaterKind = Literal["approval", "person", "delivery"]
#: Keys on an outbox row's ``meta``, set by code: the one opt-out confirmation; a message a
#: person approved; a person's reply from the inbox (its handoff).
OPT_OUT_CONFIRMATION = "opt_out_confirmation"
APPROVED_BY = "approved_by"
HANDOFF_ID = "handoff_id"


def by_person(meta: dict[str, object]) -> bool:
    """Whether an outbox row's message was written or approved by a person."""
    return bool(meta.get(HANDOFF_ID) or meta.get(APPROVED_BY))


class LedgerRow(Protocol):
    """A message already sent or scheduled, as the store lists it."""

    @property
    def id(self) -> str: ...
    @property
    def channel(self) -> Channel: ...
    @property
    def purpose(self) -> Purpose: ...
    @property
    def at(self) -> datetime: ...
    @property
    def is_reply(self) -> bool: ...


class SendFacts(Protocol):
    """Where the re-check reads the world as it is now (the store)."""

    def get_customer(self, customer_id: str) -> CustomerProfile | None: ...

    def active_handoff(self, conversation_id: str) -> Handoff | None: ...

    def ledger(self, customer_id: str, since: datetime) -> Sequence[LedgerRow]: ...


@dataclass(frozen=True)
class LaterSend:
    """A send that was decided earlier (or by a person), about to happen."""

    kind: LaterKind
    action: ProposedAction
    customer_id: str
    conversation_id: str
    #: The message answers the customer on the channel they wrote on.
    is_reply: bool = False
    #: A delivery: its outbox row (not counted twice by the caps) and the decision behind it.
    outbox_id: str | None = None
    decision_id: str | None = None
    #: A delivery of the opt-out confirmation (the outbox row's flag, set by code).
    opt_out_confirmation: bool = False
    #: A person wrote it (an inbox reply): an open handoff does not silence it.
    by_person: bool = False
    #: The handoff a person's reply belongs to (already read by the caller).
    handoff: Handoff | None = None


@dataclass(frozen=True)
class Recheck:
    verdict: Verdict
    #: The action as it may run now; None: the policy no longer allows it.
    action: ProposedAction | None
    #: The profile it was checked against (None: the customer is gone).
    profile: CustomerProfile | None

    @property
    def deliver_at(self) -> datetime | None:
        return self.verdict.deliver_at


def _gone(customer_id: str) -> Verdict:
    return Verdict(action_index=0, tool="send_message", outcome="deny",
                   reason_codes=["customer_gone"], detail=f"customer {customer_id} not found",
                   step="eligibility")


def recheck_later(
    policy: Policy,
    stages: Sequence[str],
    source: SendFacts,
    send: LaterSend,
    now: datetime,
) -> Recheck:
    """The policy's verdict on ``send`` now, from the profile, handoff and ledger of now."""
    profile = source.get_customer(send.customer_id)
    if profile is None:
        return Recheck(_gone(send.customer_id), None, None)
    action = send.action
    if send.kind == "delivery" and send.opt_out_confirmation:
        # the confirmation of an opt-out is the one message a revoked channel still carries
        verdict = Verdict(action_index=0, tool=action.tool, outcome="allow",
                          reason_codes=["opt_out_confirmation"])
        return Recheck(verdict, action, profile)
    handoff = send.handoff or source.active_handoff(send.conversation_id)
    if handoff is not None and send.kind == "delivery" and (
        send.by_person or handoff.decision_id == send.decision_id
    ):
        handoff = None  # the person's own reply, or the escalating turn's acknowledgement
    channel = action.channel if isinstance(action, SendMessage) else None
    ledger = [
        SentRecord(e.channel, e.purpose, e.at, e.is_reply)
        for e in source.ledger(profile.id, since=now - ledger_horizon(policy))
        if e.id != send.outbox_id
    ]
    facts = Facts(
        profile=profile,
        message=MessageFacts(text="", intent="", confidence=1.0, sentiment="neutral"),
        inbound_channel=channel if send.is_reply else None,
        now=now,
        stages=stages,
        active_handoff=handoff,
        ledger=ledger,
        origin="system" if send.kind == "delivery" else "model",
        approved_by_person=send.kind != "delivery" or send.by_person,
        delivery=send.kind == "delivery",
    )
    engine = PolicyEngine(policy)
    if facts.approved_by_person:
        verdict, allowed = engine.recheck(action, facts)
    else:
        result = engine.arbitrate([action], facts)
        verdict, allowed = result.verdicts[0], result.approved.get(0)
    return Recheck(verdict, allowed, profile)
