"""Journeys as data: triggers over behavioural signals that wake the agent, and what each
signal does to the customer's intent scores. The file is ``prompts/journeys.yaml`` (or
``JOURNEY_JOURNEYS_PATH``); it is validated with line-numbered errors and hot-reloaded.

A journey fires for a customer when its ``trigger`` holds on the customer's events (e.g. three
pricing-page views within 30 minutes). Firing queues a *journey job* due after ``delay``;
``cancels`` cancels the customer's pending jobs with those tags at once (after a pricing surge,
the generic nurture email is not sent). When the job comes due, the worker re-evaluates it:
if ``stale_when`` holds (a newer signal made it pointless) it is cancelled with the reason;
otherwise the agent decides with the journey's declared actions, through the policy gate.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.domain import CustomerProfile, Event
from policy.journey_flow import (
    CrmStep,
    EscalateStep,
    EventMatch,
    Exits,
    Goal,
    Holdout,
    SendStep,
    Step,
    check_flow,
    sends,
)
from policy.model import Duration
from policy.model_base import value_matches
from prompts.reloading import ReloadingFile
from prompts.yamlcheck import YamlInvalid, read_source, validate_yaml

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "prompts" / "journeys.yaml"

class JourneysError(YamlInvalid):
    kind = "journeys"


class Trigger(EventMatch):
    count: int = Field(1, ge=1, le=1000)
    within: Duration = timedelta(days=30)
    #: only for customers in these stages (all stages when empty)
    stage_in: list[str] = Field(default_factory=list)
    #: only for customers whose profile attributes match (a value, or {gte, lte, in, ...})
    profile: dict[str, Any] = Field(default_factory=dict)


class StaleWhen(BaseModel):
    """When a due journey job is pointless: any condition that holds cancels it."""

    model_config = ConfigDict(extra="forbid")
    #: an event of one of these types arrived after the trigger
    events: list[str] = Field(default_factory=list)
    #: the customer moved to one of these stages
    stage_in: list[str] = Field(default_factory=list)
    #: a handoff to a person is open
    handoff_open: bool = True



class Actions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    send: SendStep | None = None
    escalate: EscalateStep | None = None
    crm: CrmStep | None = None


class Journey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,79}$")
    description: str = ""
    #: the intent this journey acts on (recorded on its decisions)
    intent: str = "proactive"
    trigger: Trigger
    delay: Duration = timedelta(0)
    #: fires at most once per customer in this window
    cooldown: Duration = timedelta(days=1)
    #: a tag on its jobs, so another journey can cancel them
    tag: str | None = None
    #: tags of pending jobs this journey cancels when it fires
    cancels: list[str] = Field(default_factory=list)
    stale_when: StaleWhen = Field(default_factory=StaleWhen)
    #: one step: what the trigger queues after ``delay`` (or ``steps``, not both)
    actions: Actions | None = None
    #: several steps: the trigger enrols the customer (policy.journey_flow)
    steps: list[Step] = Field(default_factory=list)
    goal: Goal | None = None
    holdout: Holdout | None = None
    exits: Exits = Field(default_factory=Exits)
    #: a journey with steps: enrol again after the previous enrolment ended (and the
    #: cool-down passed), or never twice
    reentry: Literal["after_exit", "never"] = "after_exit"
    enabled: bool = True

    @property
    def multi_step(self) -> bool:
        return bool(self.steps)

    def fingerprint(self, templates: dict[str, str]) -> str:
        """This journey's version: its definition and the texts of the templates it sends
        (a customer mid-journey stays on the version they entered)."""
        used = sorted({s.template for s in sends(self.steps)})
        body = json.dumps({"journey": self.model_dump(mode="json"),
                           "templates": {t: templates.get(t) for t in used}},
                          sort_keys=True, default=str)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


class SignalEffect(EventMatch):
    """What an event does to the profile: intent scores up or down (clamped to 0..1)."""

    scores: dict[str, float] = Field(default_factory=dict)


class Journeys(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = ""
    signals: list[SignalEffect] = Field(default_factory=list)
    templates: dict[str, str] = Field(default_factory=dict)
    journeys: list[Journey] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Journeys:
        names = [j.name for j in self.journeys]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate journey names {dupes}")
        for j in self.journeys:
            if j.steps:
                self._check_steps(j)
                continue
            if j.actions is None:
                raise ValueError(f"journey {j.name!r} has neither `actions` nor `steps`")
            for key in ("goal", "holdout"):
                if getattr(j, key) is not None:
                    raise ValueError(f"journey {j.name!r}: `{key}` needs `steps`")
            send = j.actions.send
            if send is not None and send.template not in self.templates:
                raise ValueError(f"journey {j.name!r}: unknown template {send.template!r}")
            if not (j.actions.send or j.actions.escalate or j.actions.crm):
                raise ValueError(f"journey {j.name!r} has no actions")
        return self

    def _check_steps(self, j: Journey) -> None:
        if j.actions is not None:
            raise ValueError(f"journey {j.name!r} has both `actions` and `steps`: "
                             "put the actions in steps")

        def action(step: Step) -> None:
            if step.send is not None and step.send.template not in self.templates:
                raise ValueError(f"journey {j.name!r}: step {step.id!r}: unknown template "
                                 f"{step.send.template!r}")

        check_flow(j.name, j.steps, j.holdout, action)

    def for_event(self, event_type: str) -> list[Journey]:
        return [j for j in self.journeys if j.enabled and j.trigger.event == event_type]

    def get(self, name: str) -> Journey | None:
        return next((j for j in self.journeys if j.name == name), None)


def trigger_holds(
    journey: Journey, profile: CustomerProfile, events: Sequence[Event], now: datetime
) -> list[Event]:
    """The events that make ``journey``'s trigger hold now (empty: it does not)."""
    trig = journey.trigger
    if trig.stage_in and profile.lifecycle_stage not in trig.stage_in:
        return []
    if trig.profile and not all(value_matches(profile.attributes.get(k), v)
                                for k, v in trig.profile.items()):
        return []
    since = now - trig.within
    matching = [e for e in events if trig.matches(e) and since <= e.occurred_at <= now]
    return matching if len(matching) >= trig.count else []


def apply_signals(
    journeys: Journeys, scores: dict[str, float], events: Sequence[Event]
) -> dict[str, float]:
    """Intent scores after ``events`` (each declared effect adds its deltas; 0..1)."""
    out = dict(scores)
    for e in events:
        for effect in journeys.signals:
            if effect.matches(e):
                for name, delta in effect.scores.items():
                    out[name] = round(min(1.0, max(0.0, out.get(name, 0.0) + delta)), 3)
    return out


def parse_journeys(text: str, source: str = "<journeys>") -> Journeys:
    version = hashlib.sha256(text.encode()).hexdigest()[:12]
    return validate_yaml(text, Journeys, source, error=JourneysError, extra={"version": version})


def load_journeys(path: Path | None = None) -> Journeys:
    path = path or DEFAULT_PATH
    return parse_journeys(read_source(path, JourneysError), str(path))


class JourneysProvider(ReloadingFile[Journeys]):
    """The journeys in force, re-read when the file changes (checked at most every 0.5 s); an
    invalid edit is refused (``last_error``) and the last valid version stays in force."""

    last_error: JourneysError | None  # type: ignore[assignment]

    def __init__(self, path: Path | None = None) -> None:
        super().__init__(path or DEFAULT_PATH, load_journeys, lambda j: j.version)
