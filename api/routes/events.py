"""POST /v1/events: behavioural signals in, in batches."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from api.deps import SignalsDep, require
from journey.event_input import MAX_BATCH, IngestResult

router = APIRouter(prefix="/v1", tags=["events"])


class EventBatch(BaseModel):
    """Up to 1,000 events. Each is validated on its own (see ``EventIn`` in the schema)."""

    events: list[Any] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        examples=[[{
            "id": "evt_1", "type": "page_view", "customer": {"email": "dana@example.com"},
            "properties": {"page": "pricing"}, "occurred_at": "2026-11-03T10:15:00Z",
        }]],
    )


@router.post(
    "/events",
    response_model=IngestResult,
    responses={422: {"description": "the batch is malformed, or every event in it is invalid",
                     "model": IngestResult}},
)
def post_events(
    body: EventBatch,
    signals: SignalsDep,
    _key: Annotated[str, Depends(require("messages:write"))],
) -> Any:
    """Ingest behavioural events (page views, downloads, carts, usage, NPS answers...).

    Idempotent by event id: a repeat is reported as `duplicate` and changes nothing. Every
    event is validated on its own: a bad one is `rejected` with its reasons while the good
    ones in the same batch are accepted. An accepted event updates the profile at once
    (traits, intent scores, the declared stage rules) and may fire journeys (`fired`), which
    queue the agent's proactive decision. Answers 422 only when every event was rejected.
    """
    if signals is None:  # pragma: no cover - build_container always sets it
        raise HTTPException(503, "signals are not configured")
    result = signals.ingest(body.events)
    if result.accepted == 0 and result.duplicates == 0:
        return JSONResponse(status_code=422, content={
            "detail": "every event in the batch was rejected", **result.model_dump(mode="json")
        })
    # serialised once here (FastAPI would validate the 1,000 results again, then serialise)
    return Response(content=result.model_dump_json(), media_type="application/json")
