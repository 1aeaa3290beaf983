"""Lifecycle stages as data, and the declared rules that move customers between them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from core.domain import CustomerProfile, Event
from prompts import read_yaml

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "prompts" / "lifecycle.yaml"


class EventCondition(BaseModel):
    type: str
    where: dict[str, Any] = Field(default_factory=dict)
    count_at_least: int = Field(1, ge=1)
    within_minutes: float = Field(60 * 24 * 30, gt=0)


class When(BaseModel):
    intent_in: list[str] | None = None
    stage_in: list[str] | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    event: EventCondition | None = None


class StageRule(BaseModel):
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
    ) -> tuple[str, str | None]:
        """The stage after this turn and the name of the rule that moved it (None: no move)."""
        current = profile.lifecycle_stage
        for rule in self.rules:
            if not _holds(rule.when, profile, intent, events, now):
                continue
            if rule.move_to == current:
                continue
            if not rule.backward and self.index(rule.move_to) < self.index(current):
                continue
            return rule.move_to, rule.name
        return current, None


def _holds(
    when: When, profile: CustomerProfile, intent: str | None, events: Sequence[Event], now: datetime
) -> bool:
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
        matching = [
            e
            for e in events
            if e.type == cond.type
            and since <= e.occurred_at <= now
            and all(e.properties.get(k) == v for k, v in cond.where.items())
        ]
        if len(matching) < cond.count_at_least:
            return False
    return True


def load_lifecycle(path: Path = DEFAULT_PATH) -> Lifecycle:
    """The lifecycle file; a repeated key raises :class:`prompts.DuplicateKeyError`."""
    return Lifecycle.model_validate(read_yaml(path))
