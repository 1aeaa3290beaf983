"""The policy as data: pydantic models for ``policy.yaml``.

Every field has a default, so an empty file is a valid (strict) policy; ``policy/default.yaml``
is the documented default. ``journey policy explain`` prints the effective policy.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from core.domain import CHANNELS, Channel, Priority, Purpose, Queue

ConsentRule = Literal["explicit", "implied", "reply"]
Tool = Literal["send_message", "update_crm", "escalate_to_human", "issue_credit"]
_DURATION = re.compile(r"^\s*(\d+)\s*(m|h|d)\s*$")


_CONSENT_RULES: dict[Purpose, ConsentRule] = {
    "marketing": "explicit", "service": "reply", "transactional": "implied"
}
_MARKETING: tuple[Purpose, ...] = ("marketing",)
_KEYWORD_CHANNELS: tuple[Channel, ...] = ("sms", "whatsapp")
_ACKNOWLEDGEMENTS: dict[Queue, str] = {
    "sales": "I'm connecting you with our sales team now. They'll have the full context, so "
    "you won't need to repeat yourself.",
    "support": "I'm connecting you with our support team now. They'll see everything we've "
    "discussed, so you won't need to repeat yourself.",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_duration(value: str | int | timedelta) -> timedelta:
    """``"90m"``, ``"24h"``, ``"7d"`` (or seconds as an int) as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int):
        return timedelta(seconds=value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration like '90m', '24h' or '7d'")
    n, unit = int(match.group(1)), match.group(2)
    return {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n)}[unit]


def _unique_names(kind: str, names: list[str]) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate {kind} names {dupes}")


#: A duration written as ``"90m"``, ``"24h"``, ``"7d"`` (or seconds) in YAML.
Duration = Annotated[
    timedelta,
    BeforeValidator(lambda v: parse_duration(v) if isinstance(v, str | int) else v),
]


def fmt_duration(window: timedelta | None) -> str:
    """A duration as the policy file writes it: ``90m``, ``24h``, ``7d``."""
    if window is None:
        return "-"
    minutes = int(window.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


class ConsentPolicy(_Strict):
    """What consent each purpose needs on a channel.

    ``explicit``: the customer granted it; ``implied``: allowed unless revoked; ``reply``: implied
    on the channel the customer just wrote on, explicit on any other.
    """

    purposes: dict[Purpose, ConsentRule] = Field(default_factory=lambda: dict(_CONSENT_RULES))
    #: The carrier-standard keywords (CTIA): a message that is one of them, however typed
    #: (any case, full-width or accented letters, spaced out, with punctuation), opts out.
    opt_out_keywords: list[str] = Field(
        default_factory=lambda: ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"]
    )
    #: More opt-out keywords, e.g. in the customers' other languages (ARRET, BAJA, STOPP).
    opt_out_keywords_extra: list[str] = Field(default_factory=list)
    opt_in_keywords: list[str] = Field(default_factory=lambda: ["START", "UNSTOP", "YES"])
    #: Where a bare keyword is an opt-out (carrier keywords). On other channels "cancel" or
    #: "end" alone usually means something else; there the classifier and a cue decide.
    keyword_channels: list[Channel] = Field(default_factory=lambda: list(_KEYWORD_CHANNELS))
    #: An opt-out also counts when the intent classifier reads one with at least this confidence
    #: *and* the message has one of ``opt_out_cues`` ("text me a code" reads like "don't text
    #: me" to an embedding; a cue word tells them apart).
    opt_out_intent_confidence: float = Field(0.6, ge=0, le=1)
    opt_out_cues: list[str] = Field(
        default_factory=lambda: [
            "stop", "don't", "dont", "do not", "no more", "unsubscribe", "unsub", "remove",
            "opt out", "opt-out", "take me off", "off your list", "off the list", "never",
            "not interested", "leave me alone",
        ]
    )
    #: The one message sent after an opt-out, whatever the model proposed.
    opt_out_confirmation: str = (
        "You're unsubscribed and won't receive further messages on this channel. "
        "Reply START to opt back in."
    )

    @field_validator("purposes")
    @classmethod
    def _every_purpose(cls, value: dict[Purpose, ConsentRule]) -> dict[Purpose, ConsentRule]:
        missing = {"marketing", "service", "transactional"} - set(value)
        if missing:
            raise ValueError(f"consent rule missing for purposes {sorted(missing)}")
        return value

    @field_validator("opt_out_keywords", "opt_out_keywords_extra", "opt_in_keywords")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        found = [keyword_form(v) for v in value if keyword_form(v)]
        bad = [v for v in value if v.strip() and not keyword_form(v)]
        if bad:
            raise ValueError(f"keywords must contain letters: {bad}")
        return found


def keyword_form(text: str) -> str:
    """How a keyword is compared: compatibility forms folded (full-width letters), accents
    dropped, only the letters kept, upper case: "Ｓ t.o.p!", "S T O P" and "stop" are "STOP",
    "Arrêt" is "ARRET"."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    return "".join(c for c in decomposed if c.isalpha()).upper()


class FrequencyCap(_Strict):
    """At most ``max`` messages of ``purposes`` on ``channels`` per ``window`` (rolling) or per
    calendar ``day`` in the customer's timezone. Replies to the customer's own message are not
    counted or capped unless ``include_replies``."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    max: int = Field(ge=0)
    purposes: list[Purpose] = Field(default_factory=lambda: list(_MARKETING))
    #: Empty: across all channels together.
    channels: list[Channel] = Field(default_factory=list)
    window: Duration | None = None
    per: Literal["day"] | None = None
    include_replies: bool = False


    @model_validator(mode="after")
    def _one_window(self) -> FrequencyCap:
        if (self.window is None) == (self.per is None):
            raise ValueError(f"cap {self.name!r}: give exactly one of 'window' or 'per: day'")
        if "transactional" in self.purposes:
            raise ValueError(f"cap {self.name!r}: transactional messages are exempt from caps")
        return self


class QuietHours(_Strict):
    """No ``purposes`` messages between ``start`` and ``end`` in the customer's local time."""

    start: time = time(21, 0)
    end: time = time(8, 0)
    purposes: list[Purpose] = Field(default_factory=lambda: list(_MARKETING))
    default_timezone: str = "UTC"

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet hours start and end are equal")
        if "transactional" in self.purposes:
            raise ValueError("transactional messages are exempt from quiet hours")
        return self


class ChannelPolicy(_Strict):
    available: bool = True
    max_chars: int = Field(gt=0)
    #: Markdown is turned into plain text on channels that do not render it.
    markdown: bool = False


def _default_channels() -> dict[Channel, ChannelPolicy]:
    return {
        "web_chat": ChannelPolicy(max_chars=2000, markdown=True),
        "email": ChannelPolicy(max_chars=10000, markdown=True),
        "sms": ChannelPolicy(max_chars=459),
        "whatsapp": ChannelPolicy(max_chars=4096),
    }


class ContactPolicy(_Strict):
    consent: ConsentPolicy = Field(default_factory=ConsentPolicy)
    caps: list[FrequencyCap] = Field(default_factory=list)
    quiet_hours: QuietHours | None = Field(default_factory=QuietHours)
    channels: dict[Channel, ChannelPolicy] = Field(default_factory=_default_channels)
    #: Order in which the engine tries channels when it may switch one (the customer's own
    #: ``channel_preference`` attribute comes first).
    preference: list[Channel] = Field(default_factory=lambda: list(CHANNELS))
    #: Switch a proactive message to the next allowed channel instead of denying it.
    switch_channels: bool = True

    @field_validator("channels")
    @classmethod
    def _every_channel(cls, value: dict[Channel, ChannelPolicy]) -> dict[Channel, ChannelPolicy]:
        missing = set(CHANNELS) - set(value)
        if missing:
            raise ValueError(f"channel settings missing for {sorted(missing)}")
        return value

    @model_validator(mode="after")
    def _unique_caps(self) -> ContactPolicy:
        _unique_names("cap", [c.name for c in self.caps])
        return self


class EscalationWhen(_Strict):
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


class EscalationRule(_Strict):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    when: EscalationWhen
    #: ``auto``: sales when the message's best other intent is a sales topic, else support.
    queue: Queue
    priority: Priority = "normal"
    reason: str


class EscalationPolicy(_Strict):
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
        _unique_names("escalation rule", [r.name for r in self.rules])
        return self


def _regex(value: str) -> str:
    """``value`` if it compiles as a regular expression (a line-numbered error otherwise)."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"pattern {value!r} is not a valid regular expression: {exc}") from exc
    return value


Regex = Annotated[str, AfterValidator(_regex)]


class ForbiddenClaim(_Strict):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    pattern: Regex
    on_violation: Literal["rewrite", "block"] = "rewrite"


class ContentPolicy(_Strict):
    #: Largest discount, in percent, the bot may mention.
    max_discount_percent: float = Field(0, ge=0, le=100)
    #: Largest credit or refund, in the account currency, the bot may mention or issue.
    max_credit: float = Field(0, ge=0)
    forbidden: list[ForbiddenClaim] = Field(default_factory=list)
    #: Contact details the bot may give out besides the customer's own (the company's).
    allowed_contacts: list[str] = Field(default_factory=list)
    #: Safe replies used when a reply is rewritten; key = reason code, ``default`` required.
    templates: dict[str, str] = Field(
        default_factory=lambda: {
            "default": "I can't help with that here, but I can connect you with our team."
        }
    )

    @field_validator("templates")
    @classmethod
    def _default_template(cls, value: dict[str, str]) -> dict[str, str]:
        if "default" not in value:
            raise ValueError("content templates need a 'default' entry")
        return value


class SecretPattern(_Strict):
    """A kind of secret masked wherever a customer types it, like card numbers."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    #: A regular expression (case-insensitive) for the whole secret.
    pattern: Regex
    #: Digits of it kept so a person can still refer to it: ``[us_ssn ending 6789]``.
    keep_last: int = Field(0, ge=0, le=8)


class PrivacyPolicy(_Strict):
    """What is masked at ingress: before anything is stored, embedded, prompted or logged."""

    #: Payment card numbers (13-19 digits passing the Luhn check): ``[card ending 1111]``.
    mask_card_numbers: bool = True
    secrets: list[SecretPattern] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> PrivacyPolicy:
        _unique_names("secret", [p.name for p in self.secrets])
        return self


class ApprovalRule(_Strict):
    """Actions of ``tool`` need a human's approval (when the optional conditions hold)."""

    tool: Tool
    min_amount: float | None = None
    purposes: list[Purpose] = Field(default_factory=list)
    priorities: list[Priority] = Field(default_factory=list)


class StageMove(_Strict):
    """A stage change a brain may make on its own (``from: "*"`` is any stage)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    from_stage: str = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)

    def allows(self, current: str, target: str) -> bool:
        return self.to == target and self.from_stage in ("*", current)


class CrmPolicy(_Strict):
    writable_fields: list[str] = Field(default_factory=list)
    protected_fields: list[str] = Field(
        default_factory=lambda: ["email", "phone", "consent", "customer_id", "id", "plan"]
    )
    max_note_chars: int = Field(2000, gt=0)
    #: Stage changes a brain may make without a lifecycle rule (the declared rules in
    #: prompts/lifecycle.yaml always may); empty: only the rules move customers.
    model_stage_moves: list[StageMove] = Field(default_factory=list)


class QueueConfig(_Strict):
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


class RouteWhen(_Strict):
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


class RoutingRule(_Strict):
    """Send a handoff to ``queue`` (and raise its priority to at least ``priority``)."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    when: RouteWhen
    queue: Queue
    priority: Priority | None = None


class HandoffPolicy(_Strict):
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
        _unique_names("routing rule", [r.name for r in self.routing])
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


class Policy(_Strict):
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
