"""GET /v1/outbox and POST /v1/outbox/replay: the delivery queue and its dead letters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.deps import HubDep, StoreDep, require
from memory.outbox import OutboxRow

router = APIRouter(prefix="/v1", tags=["outbox"])


class OutboxList(BaseModel):
    counts: dict[str, int]
    rows: list[OutboxRow]


class ReplayRequest(BaseModel):
    ids: list[Annotated[str, Field(max_length=40)]] = Field(
        default_factory=list, max_length=1000, description="Dead rows to replay (at most 1,000); "
        "empty: all.")


class ReplayResult(BaseModel):
    replayed: int


@router.get("/outbox", response_model=OutboxList)
def list_outbox(
    store: StoreDep,
    _key: Annotated[str, Depends(require("admin"))],
    status: Annotated[str | None, Query(
        pattern="^(pending|scheduled|sending|sent|dead|cancelled)$")] = None,
    customer_id: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> OutboxList:
    """Outbound messages by status: `dead` is the dead-letter queue (with `last_error`)."""
    queue = store.outbox_queue
    return OutboxList(counts=queue.counts(),
                      rows=queue.list(status=status, customer_id=customer_id, limit=limit))


@router.post("/outbox/replay", response_model=ReplayResult)
def replay_outbox(
    body: ReplayRequest,
    store: StoreDep,
    hub: HubDep,
    _key: Annotated[str, Depends(require("admin"))],
) -> ReplayResult:
    """Put dead-lettered messages back in the queue (due now, fresh attempts). They keep
    their idempotency keys, so a message the provider did take is not sent twice."""
    replayed = store.outbox_queue.replay(body.ids or None)
    if replayed:
        hub.notify("jobs")
    return ReplayResult(replayed=replayed)
