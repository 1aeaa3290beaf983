"""POST /v1/messages: a customer message in, a policy-checked decision and reply out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import TurnsDep, require
from journey.turns import InboundRequest, TurnResult

router = APIRouter(prefix="/v1", tags=["messages"])


@router.post(
    "/messages",
    response_model=TurnResult,
    responses={409: {"description": "the same message is being handled right now"}},
)
def post_message(
    body: InboundRequest,
    turns: TurnsDep,
    _key: Annotated[str, Depends(require("messages:write"))],
) -> TurnResult:
    """Handle one inbound customer message.

    Stores it, runs the agent (context → understand → decide → policy gate → act → respond →
    record) and returns the decision with every proposed action's verdict. A repeated
    `external_id` on the same channel returns the first result and runs nothing twice.
    """
    return turns.handle_message(body)
