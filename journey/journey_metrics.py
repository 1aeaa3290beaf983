"""What a journey with steps did: the funnel, each step's outcomes, exits, goal conversions by
arm with intervals, the lift over the holdout and each split's variants.

``GET /v1/journeys/{name}/metrics``, ``journey journeys metrics NAME`` and the console's
journey page all read :func:`journey_metrics`. Rates come with Wilson intervals and the lift
over the holdout with a Newcombe interval (:mod:`journey.experiments`); a result whose interval
still covers zero is reported as not yet significant.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from journey.experiments import ArmCounts, ExperimentReport, report
from memory.enrolments import Enrolment
from memory.store import Store
from policy.journeys import Journey


class IntervalOut(BaseModel):
    low: float
    high: float


class ArmOut(BaseModel):
    name: str
    customers: int
    conversions: int
    rate: float | None
    interval: IntervalOut
    #: the arm's rate minus the holdout's, with its interval (None: no holdout)
    lift: float | None = None
    lift_interval: IntervalOut | None = None
    lift_significant: bool | None = None


class Experiment(BaseModel):
    arms: list[ArmOut]
    holdout: ArmOut | None = None
    winner: str | None
    summary: str


class StepOut(BaseModel):
    id: str
    kind: str
    #: enrolments that reached this step (on it now, or passed through)
    reached: int
    #: on it now (a wait, or an action about to run)
    current: int
    outcomes: dict[str, int] = Field(default_factory=dict)
    #: suppressed actions by the policy's reason code
    suppressed_by: dict[str, int] = Field(default_factory=dict)
    #: where a branch went, which variant a split drew, which option an agent chose
    paths: dict[str, int] = Field(default_factory=dict)


class DayOut(BaseModel):
    day: str
    entered: int
    conversions: dict[str, int]


class JourneyMetrics(BaseModel):
    journey: str
    description: str
    versions: list[str]
    goal: str | None
    entered: int
    by_arm: dict[str, int]
    active: int
    waiting: int
    exited: dict[str, int]
    messages_sent: int
    messages_suppressed: int
    suppressed_by: dict[str, int]
    conversions: int
    #: hours from entering to the goal: median and 90th percentile
    time_to_convert_hours: dict[str, float | None]
    #: entered, each step (customers who reached it), the goal: in all and by arm
    funnel: list[dict[str, Any]]
    steps: list[StepOut]
    #: the treatment against the holdout (None: the journey has no holdout)
    holdout: Experiment | None
    #: each split step's variants
    variants: dict[str, Experiment]
    by_day: list[DayOut]


def journey_metrics(store: Store, journey: Journey, now: datetime) -> JourneyMetrics:
    enrolments = store.enrolments.for_journey(journey.name)
    logs = store.enrolments.steps(journey.name)
    by_arm = Counter(e.arm for e in enrolments)
    exited = Counter(e.exit_reason or "" for e in enrolments if e.status == "exited")
    converted = [e for e in enrolments if e.converted_at is not None]
    hours = sorted((e.converted_at - e.entered_at).total_seconds() / 3600  # type: ignore[operator]
                   for e in converted)
    steps = _steps(journey, enrolments, logs)
    actions = [r for r in logs if r["kind"] in ("send", "escalate", "crm", "agent")]
    suppressed_by: Counter[str] = Counter()
    for r in actions:
        suppressed_by.update(_refused(r))
    # the funnel, also by arm (the control's static steps are not the treatment's)
    arm_of = {e.id: e.arm for e in enrolments}
    reached: dict[str, Counter[str]] = defaultdict(Counter)
    for step_id, ids in _reached(enrolments, logs).items():
        reached[step_id].update(arm_of.get(i, "treatment") for i in ids)

    def row(step: str, arms: Counter[str]) -> dict[str, Any]:
        return {"step": step, "customers": sum(arms.values()),
                "treatment": arms["treatment"], "holdout": arms["holdout"]}

    funnel = [row("entered", Counter(e.arm for e in enrolments))]
    funnel += [row(s.id, reached[s.id]) for s in steps]
    funnel.append(row("goal", Counter(e.arm for e in converted)))
    return JourneyMetrics(
        journey=journey.name,
        description=journey.description,
        versions=[v for v, _ in store.enrolments.versions(journey.name)],
        goal=(f"{journey.goal.event} within {window_text(journey.goal.within)}"
              if journey.goal else None),
        entered=len(enrolments),
        by_arm={"treatment": by_arm.get("treatment", 0), "holdout": by_arm.get("holdout", 0)},
        active=sum(e.status == "active" for e in enrolments),
        waiting=sum(e.status == "active" and e.wait_until is not None for e in enrolments),
        exited=dict(exited.most_common()),
        messages_sent=sum(r["outcome"] == "sent" or (r["outcome"] in ("deferred", "held")
                                                      and r["kind"] != "crm")
                          for r in actions),
        messages_suppressed=sum(bool(_refused(r)) for r in actions),
        suppressed_by=dict(suppressed_by.most_common()),
        conversions=len(converted),
        time_to_convert_hours={
            "median": round(statistics.median(hours), 2) if hours else None,
            "p90": round(hours[min(len(hours) - 1, int(0.9 * len(hours)))], 2)
            if hours else None},
        funnel=funnel,
        steps=steps,
        holdout=_holdout(enrolments) if journey.holdout else None,
        variants=_variants(journey, enrolments, logs),
        by_day=_by_day(enrolments),
    )


def _reached(enrolments: list[Enrolment], logs: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Each step's enrolments: those it logged a line for, and those on it now."""
    seen: dict[str, set[str]] = defaultdict(set)
    for r in logs:
        seen[r["step"]].add(r["enrolment_id"])
    for e in enrolments:
        if e.status == "active" and e.step:
            seen[e.step].add(e.id)
    return seen


def _steps(journey: Journey, enrolments: list[Enrolment],
           logs: list[dict[str, Any]]) -> list[StepOut]:
    seen = _reached(enrolments, logs)
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    suppressed: dict[str, Counter[str]] = defaultdict(Counter)
    paths: dict[str, Counter[str]] = defaultdict(Counter)
    for r in logs:
        step = r["step"]
        outcomes[step][r["outcome"]] += 1
        suppressed[step].update(_refused(r))
        if r["detail"] and r["kind"] in ("branch", "split", "agent"):
            paths[step][r["detail"]] += 1
    current = Counter(e.step for e in enrolments if e.status == "active" and e.step)
    return [StepOut(id=s.id, kind=s.kind, reached=len(seen[s.id]), current=current[s.id],
                    outcomes=dict(outcomes[s.id]), suppressed_by=dict(suppressed[s.id]),
                    paths=dict(paths[s.id]))
            for s in journey.steps]


def _refused(row: dict[str, Any]) -> list[str]:
    """The policy's reasons for refusing what a step tried: every code of a suppressed step,
    and an agent step's options refused before the one it took (``option:code``)."""
    codes: list[str] = row["reason_codes"] or []
    if row["outcome"] == "suppressed":
        return codes or ["unknown"]
    if row["kind"] == "agent":
        return [c for c in codes if ":" in c]
    return []


def _holdout(enrolments: list[Enrolment]) -> Experiment:
    def counts(arm: str) -> ArmCounts:
        mine = [e for e in enrolments if e.arm == arm]
        return ArmCounts(arm, len(mine), sum(e.converted_at is not None for e in mine))

    return _experiment(report([counts("treatment")], counts("holdout")))


def _variants(journey: Journey, enrolments: list[Enrolment],
              logs: list[dict[str, Any]]) -> dict[str, Experiment]:
    converted = {e.id for e in enrolments if e.converted_at is not None}
    out = {}
    for step in journey.steps:
        if step.split is None:
            continue
        drawn: dict[str, set[str]] = {v.name: set() for v in step.split.variants}
        for r in logs:
            if r["step"] == step.id and r["outcome"] == "variant" and r["detail"] in drawn:
                drawn[r["detail"]].add(r["enrolment_id"])
        out[step.id] = _experiment(report(
            [ArmCounts(name, len(ids), len(ids & converted)) for name, ids in drawn.items()]))
    return out


def _experiment(r: ExperimentReport) -> Experiment:
    def arm(a: Any) -> ArmOut:
        return ArmOut(
            name=a.name, customers=a.exposures, conversions=a.conversions,
            rate=None if a.rate is None else round(a.rate, 4),
            interval=IntervalOut(low=round(a.interval.low, 4), high=round(a.interval.high, 4)),
            lift=None if a.lift is None or a.lift.estimate is None
            else round(a.lift.estimate, 4),
            lift_interval=None if a.lift is None else IntervalOut(
                low=round(a.lift.interval.low, 4), high=round(a.lift.interval.high, 4)),
            lift_significant=None if a.lift is None else a.lift.significant)

    return Experiment(arms=[arm(a) for a in r.arms],
                      holdout=arm(r.holdout) if r.holdout else None,
                      winner=r.winner, summary=r.summary)


def _by_day(enrolments: list[Enrolment]) -> list[DayOut]:
    entered: Counter[str] = Counter()
    conversions: dict[str, Counter[str]] = defaultdict(Counter)
    for e in enrolments:
        entered[e.entered_at.date().isoformat()] += 1
        if e.converted_at is not None:
            conversions[e.converted_at.date().isoformat()][e.arm] += 1
    days = sorted(set(entered) | set(conversions))
    return [DayOut(day=d, entered=entered[d], conversions={
        "treatment": conversions[d]["treatment"], "holdout": conversions[d]["holdout"]})
        for d in days]


def window_text(window: Any) -> str:
    """``14 days``, ``36 hours``."""
    days = window.total_seconds() / 86400
    return f"{days:g} days" if days >= 1 else f"{window.total_seconds() / 3600:g} hours"


def metrics_journey(store: Store, current: Journey | None, name: str) -> Journey | None:
    """The journey whose steps the metrics are laid out by: the file's, or (for a journey since
    removed from the file or turned into one step) the newest version a customer entered."""
    if current is not None and current.multi_step:
        return current
    versions = store.enrolments.versions(name)
    if not versions:
        return None
    definition = store.enrolments.definition(name, versions[-1][0])
    return Journey.model_validate(definition["journey"]) if definition else None
