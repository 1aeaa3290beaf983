"""GET /v1/decisions: the audit trail, filtered by customer, conversation and reason code."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import StoreDep, require
from api.schemas import DecisionList

router = APIRouter(prefix="/v1", tags=["audit"])

#: The deepest page (a larger offset is a 422, never an overflow in the database).
MAX_OFFSET = 1_000_000


@router.get("/decisions", response_model=DecisionList)
def list_decisions(
    store: StoreDep,
    _key: Annotated[str, Depends(require("conversations:read"))],
    customer_id: Annotated[str | None, Query(max_length=40)] = None,
    conversation_id: Annotated[str | None, Query(max_length=40)] = None,
    reason: Annotated[
        str | None,
        Query(
            max_length=160,
            description="A reason code, bare (`frequency_capped`) or with its tool "
            "(`send_message:frequency_capped`), or a turn reason (`intent:pricing`).",
            examples=["consent_revoked"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> DecisionList:
    """Decisions newest first, each with its inputs, candidates, verdicts and reason codes."""
    decisions = store.search_decisions(
        customer_id=customer_id, conversation_id=conversation_id, reason=reason,
        limit=limit, offset=offset,
    )
    return DecisionList(decisions=decisions, limit=limit, offset=offset)
