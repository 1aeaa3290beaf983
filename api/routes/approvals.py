"""Approvals: actions the policy holds for a person. Approve or reject; both are idempotent."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from api.deps import StoreDep, TurnsDep, require
from api.schemas import ApprovalAnswer
from core.domain import Approval
from journey.turns import Orchestrator

router = APIRouter(prefix="/v1", tags=["approvals"])

ApprovalId = Annotated[str, Path(max_length=40, description="The approval's id")]


@router.get("/approvals", response_model=list[Approval])
def list_approvals(
    store: StoreDep,
    _key: Annotated[str, Depends(require("conversations:read"))],
    status: Annotated[
        Literal["pending", "approved", "rejected", "blocked"] | None, Query()
    ] = "pending",
    customer_id: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[Approval]:
    """Held actions, oldest first (pending ones by default)."""
    return store.approvals(status=status, customer_id=customer_id, limit=limit)


@router.get("/approvals/{approval_id}", response_model=Approval)
def get_approval(
    approval_id: ApprovalId,
    store: StoreDep,
    _key: Annotated[str, Depends(require("conversations:read"))],
) -> Approval:
    approval = store.get_approval(approval_id)
    if approval is None:
        raise HTTPException(404, f"no approval {approval_id!r}")
    return approval


def _decide(turns: Orchestrator, approval_id: str, answer: ApprovalAnswer,
            approve: bool) -> Approval:
    return turns.decide_approval(
        approval_id, approve=approve, by=answer.by, note=answer.note
    )


@router.post("/approvals/{approval_id}/approve", response_model=Approval)
def approve(
    approval_id: ApprovalId,
    answer: ApprovalAnswer,
    turns: TurnsDep,
    _key: Annotated[str, Depends(require("approvals:write"))],
) -> Approval:
    """Run the held action (once). Approving again returns the first result; approving a
    rejected action is a 409. If the policy no longer allows it, the status is `blocked`."""
    return _decide(turns, approval_id, answer, approve=True)


@router.post("/approvals/{approval_id}/reject", response_model=Approval)
def reject(
    approval_id: ApprovalId,
    answer: ApprovalAnswer,
    turns: TurnsDep,
    _key: Annotated[str, Depends(require("approvals:write"))],
) -> Approval:
    """Drop the held action; nothing runs. Rejecting again returns the same answer."""
    return _decide(turns, approval_id, answer, approve=False)
