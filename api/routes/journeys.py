"""GET /v1/journeys and GET /v1/journeys/{name}/metrics: the journeys and what they did."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel

from api.deps import JourneysDep, StoreDep, require
from journey.journey_metrics import (
    JourneyMetrics,
    journey_metrics,
    metrics_journey,
    window_text,
)

router = APIRouter(prefix="/v1", tags=["journeys"])

JourneyName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,79}$",
                                  description="The journey's `name` in the journeys file.")]


class JourneySummary(BaseModel):
    name: str
    description: str
    kind: Literal["one_step", "steps"]
    enabled: bool
    trigger: str
    steps: list[str]
    goal: str | None
    holdout_share: float | None


@router.get("/journeys", response_model=list[JourneySummary])
def list_journeys(
    journeys: JourneysDep,
    _key: Annotated[str, Depends(require("admin"))],
) -> list[JourneySummary]:
    """The journeys in force (``prompts/journeys.yaml`` or ``JOURNEY_JOURNEYS_PATH``)."""
    return [JourneySummary(
        name=j.name, description=j.description, kind="steps" if j.multi_step else "one_step",
        enabled=j.enabled, trigger=j.trigger.event, steps=[s.id for s in j.steps],
        goal=f"{j.goal.event} within {window_text(j.goal.within)}" if j.goal else None,
        holdout_share=j.holdout.share if j.holdout else None,
    ) for j in journeys.get().journeys]


@router.get("/journeys/{name}/metrics", response_model=JourneyMetrics,
            responses={404: {"description": "No journey with steps of that name"}})
def get_journey_metrics(
    name: JourneyName,
    journeys: JourneysDep,
    store: StoreDep,
    _key: Annotated[str, Depends(require("admin"))],
) -> JourneyMetrics:
    """A journey with steps: entered by arm, active and waiting, exits by reason, messages sent
    and suppressed by reason code, goal conversions with 95% intervals, the lift over the
    holdout ("not yet significant" until its interval leaves zero), each split's variants, the
    funnel and each step's outcomes."""
    journey = metrics_journey(store, journeys.get().get(name), name)
    if journey is None:
        raise HTTPException(404, f"no journey with steps named {name!r}")
    return journey_metrics(store, journey, store.clock.now())
