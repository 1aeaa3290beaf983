"""Lifecycle stages as data, and the declared rules that move customers between them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.domain import CustomerProfile, Event
from policy.model_base import WHERE_OPERATORS, value_matches
from prompts.yamlcheck import YamlInvalid, read_source, validate_yaml

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "prompts" / "lifecycle.yaml"


class EventMatch(BaseModel):
    """Events of ``type`` (one or several) whose properties match ``where`` (a value, or a
    comparison such as ``{gte: 9}``)."""

    model_config = ConfigDict(extra="forbid")
    type: str | list[str]
    where: dict[str, Any] = Field(default_factory=dict)

    @field_validator("where")
    @classmethod
    def _operators(cls, where: dict[str, Any]) -> dict[str, Any]:
        for key, expected in where.items():
            unknown = set(expected) - WHERE_OPERATORS if isinstance(expected, dict) else ()
            if unknown:
                raise ValueError(f"where.{key}: unknown comparison {sorted(unknown)}; use "
                                 f"{', '.join(sorted(WHERE_OPERATORS))}")
        return where

    def matches(self, event: Event) -> bool:
        types = [self.type] if isinstance(self.type, str) else self.type
        return event.type in types and all(
            value_matches(event.properties.get(k), v) for k, v in self.where.items())


class EventCondition(EventMatch):
    count_at_least: int = Field(1, ge=1)
    within_minutes: float = Field(60 * 24 * 30, gt=0)


class When(BaseModel):
    model_config = ConfigDict(extra="forbid")
    intent_in: list[str] | None = None
    stage_in: list[str] | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    #: the customer's recent events include these
    event: EventCondition | None = None
    #: the signal being handled now is this event (a purchase, a cancellation, an NPS answer)
    on_event: EventMatch | None = None


class StageRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    when: When
    move_to: str
    backward: bool = False


class Lifecycle(BaseModel):
    stages: list[str] = Field(min_length=1)
    default_stage: str
    rules: list[StageRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_stages(self) -> Lifecycle:
        known = set(self.stages)
        if len(known) != len(self.stages):
            raise ValueError("stages must be unique")
        if self.default_stage not in known:
            raise ValueError(f"default_stage {self.default_stage!r} is not one of {self.stages}")
        for rule in self.rules:
            for stage in [rule.move_to, *(rule.when.stage_in or [])]:
                if stage not in known:
                    raise ValueError(f"rule {rule.name!r}: unknown stage {stage!r}")
        return self

    def index(self, stage: str) -> int:
        return self.stages.index(stage) if stage in self.stages else -1

    def next_stage(
        self,
        profile: CustomerProfile,
        intent: str | None,
        events: Sequence[Event],
        now: datetime,
        signal: Event | None = None,
    ) -> tuple[str, str | None]:
        """The stage after this turn or signal and the name of the rule that moved it (None: no
        move). ``intent`` is the message's (None for an event); ``signal`` the event being
        handled (None for a message)."""
        current = profile.lifecycle_stage
        for rule in self.rules:
            if not _holds(rule.when, profile, intent, events, now, signal):
                continue
            if rule.move_to == current:
                continue
            if not rule.backward and self.index(rule.move_to) < self.index(current):
                continue
            return rule.move_to, rule.name
        return current, None


def _holds(
    when: When, profile: CustomerProfile, intent: str | None, events: Sequence[Event],
    now: datetime, signal: Event | None,
) -> bool:
    if when.on_event is not None and (signal is None or not when.on_event.matches(signal)):
        return False
    if when.intent_in is not None and intent not in when.intent_in:
        return False
    if when.stage_in is not None and profile.lifecycle_stage not in when.stage_in:
        return False
    for key, expected in when.attributes.items():
        if key not in profile.attributes:
            return False
        if expected != "*" and profile.attributes[key] != expected:
            return False
    if when.event is not None:
        cond = when.event
        since = now - timedelta(minutes=cond.within_minutes)
        matching = [e for e in events if cond.matches(e) and since <= e.occurred_at <= now]
        if len(matching) < cond.count_at_least:
            return False
    return True


class LifecycleError(YamlInvalid):
    kind = "lifecycle"


def load_lifecycle(path: Path = DEFAULT_PATH) -> Lifecycle:
    """The lifecycle file; every problem (a repeated key, an unknown stage or comparison, a
    misspelt condition) raises :class:`LifecycleError` naming its line."""
    return validate_yaml(read_source(path, LifecycleError), Lifecycle, str(path),
                         error=LifecycleError)
