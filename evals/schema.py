"""The suite format: a YAML file of cases, validated by these models (JSON schema:
``journey eval schema``).

A case sets up isolated fixtures (customers, past events, a clock, policy overrides), plays the
customer's turns, checks expectations on every turn and on the final state of the world (CRM,
outbox, consent, handoffs), as tau-bench scores an agent by the state it leaves behind.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.clock import utc
from core.domain import Channel, ConsentStatus, Priority, Purpose, Queue
from policy.model import Duration

Tool = Literal["send_message", "update_crm", "escalate_to_human", "issue_credit"]
Outcome = Literal["allow", "modify", "deny"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerFixture(_Strict):
    """A customer who exists before the case starts. ``key`` names them in turns."""

    key: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    web_chat_id: str | None = None
    stage: str = "awareness"
    timezone: str = "UTC"
    attributes: dict[str, Any] = Field(default_factory=dict)
    #: channel → status, or channel → {service, marketing}
    consent: dict[Channel, Any] = Field(default_factory=dict)


class EventFixture(_Strict):
    """A behavioural signal before the case starts (``ago`` before the case clock)."""

    customer: str
    type: str
    ago: Duration = timedelta(minutes=10)
    properties: dict[str, Any] = Field(default_factory=dict)



class Fixtures(_Strict):
    customers: list[CustomerFixture] = Field(default_factory=list)
    events: list[EventFixture] = Field(default_factory=list)
    #: The case clock at the first turn (UTC). Each turn advances it (``after``).
    clock: datetime = datetime(2026, 11, 3, 15, 0, tzinfo=UTC)
    #: Deep-merged over the policy in force (``policy/default.yaml`` unless the runner says).
    policy: dict[str, Any] = Field(default_factory=dict)

    @field_validator("clock")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return utc(value)


class ActionExpect(_Strict):
    """An action the turn must (or must not) contain. Only the given fields are compared."""

    tool: Tool
    outcome: Outcome | Literal["executed", "not_executed"] | None = None
    reason: str | None = Field(None, description="A reason code the verdict must carry.")
    #: Argument subset, e.g. {queue: sales} or {channel: sms}.
    args: dict[str, Any] = Field(default_factory=dict)


class TurnExpect(_Strict):
    intent: str | list[str] | None = None
    stage: str | None = None
    actions: list[ActionExpect] = Field(default_factory=list)
    #: Fails if any executed action matches one of these.
    forbidden: list[ActionExpect] = Field(default_factory=list)
    handoff: Queue | Literal["none"] | None = None
    reply: bool | None = Field(None, description="true: a reply must be sent; false: none.")
    reply_contains: list[str] = Field(default_factory=list)
    reply_not_contains: list[str] = Field(default_factory=list)
    #: Defaults to the channel's limit in the policy.
    reply_max_chars: int | None = None
    reasons: list[str] = Field(default_factory=list, description="Codes the decision carries.")


class Turn(_Strict):
    """One customer message (``say``) on a channel, or an approval of the last held action."""

    say: str | None = None
    channel: Channel = "web_chat"
    customer: str | None = Field(None, description="Fixture key; default: the first customer.")
    #: Advance the case clock before this turn (e.g. 10m, 2h, 1d).
    after: Duration = timedelta(minutes=1)
    approve: bool | None = Field(None, description="Approve (true) / reject the held action.")
    expect: TurnExpect = Field(default_factory=TurnExpect)


    @model_validator(mode="after")
    def _one_kind(self) -> Turn:
        if (self.say is None) == (self.approve is None):
            raise ValueError("a turn has exactly one of 'say' or 'approve'")
        return self


class ScriptLine(_Strict):
    """A scripted persona's rule: when the bot's last reply contains ``when`` (any of them,
    case-insensitive; empty = always), say ``say``. Rules are tried in order."""

    when: list[str] = Field(default_factory=list)
    say: str


class Persona(_Strict):
    """A simulated customer: scripted rules, or an LLM with a goal and facts it reveals only
    when asked. The conversation ends on the goal, a handoff, or the turn limit."""

    kind: Literal["scripted", "llm"] = "scripted"
    customer: str | None = None
    channel: Channel = "web_chat"
    opening: str
    script: list[ScriptLine] = Field(default_factory=list)
    goal: str = ""
    hidden_facts: dict[str, Any] = Field(default_factory=dict)
    #: The goal is reached when the bot's reply contains one of these (case-insensitive).
    goal_reply_contains: list[str] = Field(default_factory=list)
    end_on_handoff: bool = True
    max_turns: int = Field(6, ge=1, le=30)
    pace: Duration = timedelta(minutes=1)


    @model_validator(mode="after")
    def _has_a_voice(self) -> Persona:
        if self.kind == "scripted" and not self.script:
            raise ValueError("a scripted persona needs script lines")
        if self.kind == "llm" and not self.goal:
            raise ValueError("an llm persona needs a goal")
        return self


class OutboxExpect(_Strict):
    channel: Channel | None = None
    purpose: Purpose | None = None
    status: Literal["sent", "pending", "scheduled"] | None = None
    contains: str | None = None
    #: How many outbox rows must match (default: at least one).
    count: int | None = Field(None, ge=0)


class FinalExpect(_Strict):
    customer: str | None = None
    stage: str | None = None
    #: CRM attributes that must have these values (others are not compared).
    fields: dict[str, Any] = Field(default_factory=dict)
    #: CRM attributes that must not be set.
    fields_absent: list[str] = Field(default_factory=list)
    consent: dict[Channel, dict[str, ConsentStatus]] = Field(default_factory=dict)
    outbox: list[OutboxExpect] = Field(default_factory=list)
    outbox_total: int | None = Field(None, ge=0)
    #: Reason codes that must appear on some verdict of the case (e.g. frequency_capped).
    suppressed: list[str] = Field(default_factory=list)
    handoff: Queue | Literal["none"] | None = None
    handoff_priority: Priority | None = None
    approvals: dict[Literal["pending", "approved", "rejected", "blocked"], int] = Field(
        default_factory=dict
    )
    #: How a simulated customer's conversation must end.
    persona_end: Literal["goal", "handoff", "turn_limit"] | None = None
    #: Lines an LLM judge grades on the transcript (only with `journey eval run --judge`).
    rubric: list[str] = Field(default_factory=list)


class Case(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    fixtures: Fixtures = Field(default_factory=Fixtures)
    turns: list[Turn] = Field(default_factory=list)
    #: A simulated customer who talks after the scripted turns (if any).
    persona: Persona | None = None
    final: FinalExpect = Field(default_factory=FinalExpect)

    @model_validator(mode="after")
    def _customers_known(self) -> Case:
        keys = {c.key for c in self.fixtures.customers}
        used = {t.customer for t in self.turns if t.customer} | {
            e.customer for e in self.fixtures.events
        }
        if not self.turns and self.persona is None:
            raise ValueError(f"case {self.id}: give turns, a persona, or both")
        if self.persona and self.persona.customer:
            used.add(self.persona.customer)
        if self.final.customer:
            used.add(self.final.customer)
        unknown = sorted(used - keys)
        if unknown:
            raise ValueError(f"case {self.id}: unknown customer keys {unknown}")
        if not keys:
            raise ValueError(f"case {self.id}: fixtures.customers needs at least one customer")
        return self


class Suite(_Strict):
    name: str
    description: str = ""
    tags: list[str] = Field(default_factory=list, description="Added to every case.")
    cases: list[Case] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> Suite:
        ids = [c.id for c in self.cases]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate case ids {dupes}")
        return self


def after_total(case: Case) -> timedelta:
    return sum((t.after for t in case.turns), timedelta())
