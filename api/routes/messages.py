"""POST /v1/messages: a customer message in, a policy-checked decision and reply out."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.concurrency import run_in_threadpool

from api.deps import SettingsDep, TurnsDep, require
from journey.turns import InboundRequest, TurnResult

router = APIRouter(prefix="/v1", tags=["messages"])


def _turn_slots(app: FastAPI, limit: int) -> asyncio.Semaphore:
    """The app's turn slots (``max_concurrent_turns``), made on first use in each event loop
    that serves it (an asyncio semaphore belongs to one loop).

    Without them every waiting request took a thread and, on PostgreSQL, a turn holds one
    connection for its conversation's lock and wants another for the store: 50 concurrent
    conversations held the whole pool and waited on each other until the pool's timeout
    (HTTP 500 after 30 s; ``bench/concurrency.py``)."""
    loop = asyncio.get_running_loop()
    found: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = getattr(
        app.state, "turn_slots", None)
    if found is None or found[0] is not loop:
        found = app.state.turn_slots = (loop, asyncio.Semaphore(limit))
    return found[1]


@router.post(
    "/messages",
    response_model=TurnResult,
    responses={409: {"description": "the same message is being handled right now"}},
)
async def post_message(
    body: InboundRequest,
    turns: TurnsDep,
    settings: SettingsDep,
    request: Request,
    _key: Annotated[str, Depends(require("messages:write"))],
) -> TurnResult:
    """Handle one inbound customer message.

    Stores it, runs the agent (context → understand → decide → policy gate → act → respond →
    record) and returns the decision with every proposed action's verdict. A repeated
    `external_id` on the same channel returns the first result and runs nothing twice.
    """
    async with _turn_slots(request.app, settings.max_concurrent_turns):
        return await run_in_threadpool(turns.handle_message, body)
