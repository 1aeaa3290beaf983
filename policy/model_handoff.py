"""Escalation and handoff: which turns go to a human, and the queues, routing and service
levels of the human inbox."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator

from core.domain import Priority, Queue
from policy.model_base import Duration, Strict, unique_names

_ACKNOWLEDGEMENTS: dict[Queue, str] = {
    "sales": "I'm connecting you with our sales team now. They'll have the full context, so "
    "you won't need to repeat yourself.",
    "support": "I'm connecting you with our support team now. They'll see everything we've "
    "discussed, so you won't need to repeat yourself.",
}


class EscalationWhen(Strict):
    """Conditions of an escalation rule; all that are given must hold."""

    intents: list[str] = Field(default_factory=list)
    sentiment: Literal["negative", "neutral", "positive"] | None = None
    min_repeat_contacts: int | None = Field(None, ge=1)
    min_seats: int | None = Field(None, ge=1)
    requirements_any: list[str] = Field(default_factory=list)
    terms_any: list[str] = Field(default_factory=list)
    confidence_below: float | None = Field(None, ge=0, le=1)
    #: With ``intents``: only when the classifier is at least this sure of the intent.
    min_confidence: float | None = Field(None, ge=0, le=1)
    min_stalled_turns: int | None = Field(None, ge=1)
    #: Only when the customer is in one of these lifecycle stages.
    stages: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> EscalationWhen:
        if not self.model_dump(exclude_defaults=True):
            raise ValueError("an escalation rule needs at least one condition")
        return self


class EscalationRule(Strict):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    when: EscalationWhen
    #: ``auto``: sales when the message's best other intent is a sales topic, else support.
    queue: Queue
    priority: Priority = "normal"
    reason: str


class EscalationPolicy(Strict):
    rules: list[EscalationRule] = Field(default_factory=list)
    #: The model may escalate on its own judgement when no rule fires.
    allow_model_escalation: bool = True
    #: The highest priority a model's own escalation gets (when a rule matches, the rule's
    #: priority is the handoff's, whatever the model asked; routing rules may raise it).
    max_model_priority: Priority = "high"
    sales_topics: list[str] = Field(
        default_factory=lambda: ["pricing", "buying_signal", "demo_request"]
    )
    #: ``queue: auto`` also means sales when the message names one of these...
    sales_terms: list[str] = Field(
        default_factory=lambda: ["sales", "pricing", "price", "quote", "demo", "buy",
                                 "purchase", "contract", "enterprise plan"]
    )
    #: ...unless it names one of these (a complaint about a sales rep is for support).
    support_terms: list[str] = Field(
        default_factory=lambda: ["complaint", "complain", "refund", "invoice", "bill",
                                 "billing", "broken", "bug", "error", "outage", "not working"]
    )
    #: An inbound message at least this similar to an earlier one counts as a repeat contact.
    repeat_similarity: float = Field(0.55, ge=0, le=1)
    #: A turn stalls when the intent confidence is below this (the bot did not understand).
    stall_confidence: float = Field(0.35, ge=0, le=1)
    #: The reply sent when the engine escalates and the model proposed no reply.
    acknowledgement: dict[Queue, str] = Field(default_factory=lambda: dict(_ACKNOWLEDGEMENTS))

    @model_validator(mode="after")
    def _unique(self) -> EscalationPolicy:
        unique_names("escalation rule", [r.name for r in self.rules])
        return self


class QueueConfig(Strict):
    """A team that takes handoffs, and the service levels it promises."""

    description: str = ""
    #: A person claims a new handoff within this (scaled by ``priority_sla``).
    claim_within: Duration = Field(default_factory=lambda: timedelta(minutes=15))
    #: ...and resolves it (or returns it to the bot) within this.
    resolve_within: Duration = Field(default_factory=lambda: timedelta(hours=8))


def _default_queues() -> dict[str, QueueConfig]:
    return {
        "sales": QueueConfig(description="Buying questions, demos, quotes",
                             claim_within=timedelta(minutes=15),
                             resolve_within=timedelta(hours=4)),
        "support": QueueConfig(description="Problems, complaints, account help",
                               claim_within=timedelta(minutes=10),
                               resolve_within=timedelta(hours=8)),
    }


_PRIORITY_SLA: dict[Priority, float] = {"urgent": 0.25, "high": 0.5, "normal": 1.0, "low": 2.0}


class RouteWhen(Strict):
    """All given conditions must hold."""

    #: The queue the escalation chose (an escalation rule, ``auto`` or the model).
    queues: list[str] = Field(default_factory=list)
    #: The message's intent (by the classifier) or its best other topic.
    intents: list[str] = Field(default_factory=list)
    stages: list[str] = Field(default_factory=list)
    #: The customer's value (the profile attribute ``handoff.value_attribute``) at least this.
    min_value: float | None = Field(None, ge=0)
    priorities: list[Priority] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_condition(self) -> RouteWhen:
        if not self.model_dump(exclude_defaults=True):
            raise ValueError("a routing rule needs at least one condition")
        return self


class RoutingRule(Strict):
    """Send a handoff to ``queue`` (and raise its priority to at least ``priority``)."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    when: RouteWhen
    queue: Queue
    priority: Priority | None = None


class HandoffPolicy(Strict):
    """Queues, routing and service levels of the human inbox."""

    queues: dict[Queue, QueueConfig] = Field(default_factory=_default_queues)
    #: Checked in order after the escalation chose sales or support; the first match routes.
    routing: list[RoutingRule] = Field(default_factory=list)
    #: The profile attribute that holds a customer's value (for ``min_value``).
    value_attribute: str = "lifetime_value"
    #: SLA timers scaled by priority: an urgent handoff must be claimed 4x sooner.
    priority_sla: dict[Priority, float] = Field(default_factory=lambda: dict(_PRIORITY_SLA))
    #: A timer is "due soon" when less than this share of it is left.
    due_soon: float = Field(0.25, gt=0, lt=1)
    #: What a person may record when resolving.
    outcomes: list[str] = Field(
        default_factory=lambda: ["resolved", "sale", "refund", "no_action", "duplicate", "spam"],
        min_length=1,
    )

    @model_validator(mode="after")
    def _known_queues(self) -> HandoffPolicy:
        missing = [q for q in ("sales", "support") if q not in self.queues]
        if missing:
            raise ValueError(f"handoff queues must include sales and support (missing {missing})")
        unique_names("routing rule", [r.name for r in self.routing])
        for rule in self.routing:
            for queue in (rule.queue, *rule.when.queues):
                if queue not in self.queues:
                    raise ValueError(
                        f"routing rule {rule.name!r} names queue {queue!r}, which is not in "
                        f"handoff.queues ({', '.join(self.queues)})"
                    )
        return self

    def sla(self, queue: str, priority: str) -> tuple[timedelta, timedelta]:
        """(claim within, resolve within) for a handoff in ``queue`` at ``priority``."""
        config = self.queues.get(queue) or self.queues["support"]
        factor = next((f for p, f in self.priority_sla.items() if p == priority), 1.0)
        return config.claim_within * factor, config.resolve_within * factor
