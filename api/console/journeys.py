"""The console's journeys: every journey in force (``/console/journeys``) and what a journey
with steps did (``/console/journeys/{name}``): its funnel, conversions per day, each arm's
conversion rate with its 95% interval, the lift over the holdout, each split's variants, the
steps, exits and messages.

The numbers are :func:`journey.journey_metrics.journey_metrics`'s, the same report as
``GET /v1/journeys/{name}/metrics``; the charts are inline SVG laid out by
:mod:`api.console.charts`. Like that API, the pages need a key with the ``admin`` scope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from api.console import charts
from api.console.pages import Pages, PagesDep
from api.console.session import ConsoleSession, SessionDep
from api.deps import JourneysDep, StoreDep
from api.errors import status_of
from core.errors import DomainError, Forbidden, NotFound
from core.inbox import human_duration
from journey.journey_metrics import Experiment, JourneyMetrics, journey_metrics, metrics_journey
from memory.store import Store
from policy.journeys import Journey, Trigger

router = APIRouter(include_in_schema=False)

#: a journey's name, as the journeys file and the API allow it
NAME = re.compile(r"[a-z][a-z0-9_]{0,79}")

DAY_SERIES = (charts.Series("entered", "entered"),
              charts.Series("treatment", "conversions, treatment"),
              charts.Series("holdout", "conversions, holdout"))


def trigger_text(trigger: Trigger) -> str:
    """``page_view where page=pricing, 3× within 30m``: the trigger in one line."""
    text = trigger.event
    if trigger.where:
        text += " where " + ", ".join(f"{k}={v}" for k, v in trigger.where.items())
    if trigger.count > 1:
        text += f", {trigger.count}× within {human_duration(trigger.within.total_seconds())}"
    if trigger.stage_in:
        text += f" (stages: {', '.join(trigger.stage_in)})"
    return text


def conversion_rate(metrics: JourneyMetrics) -> float | None:
    """Conversions over customers entered, both arms."""
    return metrics.conversions / metrics.entered if metrics.entered else None


@dataclass(frozen=True)
class JourneyRow:
    """One journey in force, and its report when it has steps."""

    journey: Journey
    trigger: str
    metrics: JourneyMetrics | None

    @property
    def rate(self) -> float | None:
        return conversion_rate(self.metrics) if self.metrics else None


def _rows(store: Store, journeys: list[Journey]) -> list[JourneyRow]:
    now = store.clock.now()
    return [JourneyRow(journey=j, trigger=trigger_text(j.trigger),
                       metrics=journey_metrics(store, j, now) if j.multi_step else None)
            for j in journeys]


# --- the charts ------------------------------------------------------------------------------


def _experiment_charts(title: str, experiment: Experiment) -> dict[str, Any]:
    """The arms' rates with their intervals and, against a holdout, each arm's lift."""
    arms = [*experiment.arms, *([experiment.holdout] if experiment.holdout else [])]
    rates = charts.whiskers(f"{title}: conversion rate with its 95% interval", [
        charts.Estimate(label=a.name, point=a.rate, low=a.interval.low, high=a.interval.high,
                        note=f"{a.conversions} of {a.customers} converted")
        for a in arms], kind="rate")
    lifted = [charts.Estimate(label=a.name, point=a.lift, low=a.lift_interval.low,
                              high=a.lift_interval.high, significant=a.lift_significant,
                              note="significant" if a.lift_significant
                              else "not yet significant")
              for a in experiment.arms if a.lift_interval is not None]
    lifts = charts.whiskers(f"{title}: lift over the holdout with its 95% interval", lifted,
                            kind="lift") if lifted else None
    return {"experiment": experiment, "rates": rates, "lifts": lifts}


def journey_charts(metrics: JourneyMetrics) -> dict[str, Any]:
    """Every chart of a journey's page."""
    return {
        "funnel": charts.hbars(
            "Funnel: customers who entered, reached each step and reached the goal",
            [(f["step"], int(f["customers"])) for f in metrics.funnel], shares=True),
        "days": charts.day_bars(
            "Customers entered and conversions per day, by arm", DAY_SERIES,
            [(d.day, {"entered": d.entered, **d.conversions}) for d in metrics.by_day]),
        "holdout": _experiment_charts("Treatment and holdout", metrics.holdout)
        if metrics.holdout else None,
        "variants": {step: _experiment_charts(f"Split {step}", experiment)
                     for step, experiment in metrics.variants.items()},
        "exits": charts.hbars("Exits by reason", list(metrics.exited.items())),
        "suppressed": charts.hbars("Messages suppressed by reason code",
                                   list(metrics.suppressed_by.items())),
    }


# --- the pages -------------------------------------------------------------------------------


def _refused(pages: Pages, session: ConsoleSession, exc: DomainError) -> HTMLResponse:
    context = pages.context(session, message=exc.detail, section="journeys",
                            back_href="/console/journeys", back_label="All journeys")
    return pages.render("console/error.html", context, status_of(exc))


def _admit(session: ConsoleSession) -> None:
    if not session.admin:
        raise Forbidden("journeys need an API key with the admin scope (as GET /v1/journeys "
                        "does); this key has only the inbox")


@router.get("/console/journeys", response_class=HTMLResponse)
def journeys_page(session: SessionDep, pages: PagesDep, journeys: JourneysDep,
                  store: StoreDep) -> HTMLResponse:
    """Every journey in force, one-step or with steps; a journey with steps with its numbers."""
    try:
        _admit(session)
    except DomainError as exc:
        return _refused(pages, session, exc)
    context = pages.context(session, rows=_rows(store, journeys.get().journeys))
    return pages.render("console/journeys.html", context)


@router.get("/console/journeys/{name}", response_class=HTMLResponse)
def journey_page(name: str, session: SessionDep, pages: PagesDep, journeys: JourneysDep,
                 store: StoreDep) -> HTMLResponse:
    """A journey with steps: what it did, with charts."""
    try:
        _admit(session)
        if not NAME.fullmatch(name):
            raise NotFound(f"no journey named {name!r}")
        current = journeys.get().get(name)
        journey = metrics_journey(store, current, name)
        if journey is None:
            if current is not None:
                raise NotFound(f"journey {name!r} has one step (actions, no steps): it has no "
                               "steps to measure")
            raise NotFound(f"no journey named {name!r}")
    except DomainError as exc:
        return _refused(pages, session, exc)
    metrics = journey_metrics(store, journey, store.clock.now())
    context = pages.context(
        session, m=metrics, charts=journey_charts(metrics), rate=conversion_rate(metrics),
        trigger=trigger_text(journey.trigger), holdout_share=journey.holdout.share
        if journey.holdout else None,
        # a journey since removed from the file (or turned into one step) is shown by the
        # newest version a customer entered
        in_force=current is not None and current.multi_step,
        enabled=current.enabled if current is not None else False,
    )
    return pages.render("console/journey.html", context)
