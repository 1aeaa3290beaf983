"""The policy as data: pydantic models for ``policy.yaml``.

Every field has a default, so an empty file is a valid (strict) policy; ``policy/default.yaml``
is the documented default. ``journey policy explain`` prints the effective policy.

The sections live in modules of their own: ``model_contact`` (consent, caps, quiet hours,
channels), ``model_handoff`` (escalation rules, queues, routing), ``model_content`` (content and
privacy), ``model_actions`` (approvals, CRM) and ``model_base`` (the strict base model,
durations, regexes). Every name stays importable from here.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from policy.model_actions import ApprovalRule, CrmPolicy, StageMove, Tool
from policy.model_base import Duration, Regex, Strict, fmt_duration, parse_duration
from policy.model_contact import (
    ChannelPolicy,
    ConsentPolicy,
    ConsentRule,
    ContactPolicy,
    FrequencyCap,
    QuietHours,
    keyword_form,
)
from policy.model_content import ContentPolicy, ForbiddenClaim, PrivacyPolicy, SecretPattern
from policy.model_handoff import (
    EscalationPolicy,
    EscalationRule,
    EscalationWhen,
    HandoffPolicy,
    QueueConfig,
    RouteWhen,
    RoutingRule,
)

__all__ = [
    "ApprovalRule",
    "ChannelPolicy",
    "ConsentPolicy",
    "ConsentRule",
    "ContactPolicy",
    "ContentPolicy",
    "CrmPolicy",
    "Duration",
    "EscalationPolicy",
    "EscalationRule",
    "EscalationWhen",
    "ForbiddenClaim",
    "FrequencyCap",
    "HandoffPolicy",
    "Policy",
    "PrivacyPolicy",
    "QueueConfig",
    "QuietHours",
    "Regex",
    "RouteWhen",
    "RoutingRule",
    "SecretPattern",
    "StageMove",
    "Tool",
    "fmt_duration",
    "keyword_form",
    "parse_duration",
]


class Policy(Strict):
    """The whole policy. ``version`` is set by the loader to the file's content hash."""

    name: str = "policy"
    contact: ContactPolicy = Field(default_factory=ContactPolicy)
    escalation: EscalationPolicy = Field(default_factory=EscalationPolicy)
    content: ContentPolicy = Field(default_factory=ContentPolicy)
    approvals: list[ApprovalRule] = Field(default_factory=list)
    crm: CrmPolicy = Field(default_factory=CrmPolicy)
    handoff: HandoffPolicy = Field(default_factory=HandoffPolicy)
    privacy: PrivacyPolicy = Field(default_factory=PrivacyPolicy)
    version: str = ""

    @model_validator(mode="after")
    def _escalation_queues_exist(self) -> Policy:
        for rule in self.escalation.rules:
            if rule.queue != "auto" and rule.queue not in self.handoff.queues:
                raise ValueError(
                    f"escalation rule {rule.name!r} names queue {rule.queue!r}, which is not "
                    f"in handoff.queues ({', '.join(self.handoff.queues)})"
                )
        return self

    @model_validator(mode="after")
    def _crm_fields_disjoint(self) -> Policy:
        both = sorted(set(self.crm.writable_fields) & set(self.crm.protected_fields))
        if both:
            raise ValueError(f"crm fields both writable and protected: {both}")
        return self
