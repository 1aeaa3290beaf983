"""A held action: the turn pauses for a person (await_approval), then runs it once
(execute_approval)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agent.context import TurnServices
from agent.nodes.turn import ACTION
from agent.state import TurnState
from core.domain import (
    Approval,
)
from core.effects import TurnEffects
from policy.later import APPROVED_BY, LaterSend, recheck_later
from tools import ToolContext, run_tool


def await_approval(state: TurnState) -> dict[str, Any]:
    """Pause the turn until a person approves or rejects (``Command(resume=...)``).

    The pause is a LangGraph interrupt saved by the checkpointer, so it survives a restart."""
    answer = interrupt({"approval_id": state["approval_id"]})
    return {"approval_answer": answer}


def execute_approval(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """The held action's side effect: runs once, after approval, in its own node."""
    approval_id = state.get("approval_id")
    if not approval_id:  # pragma: no cover - the router only comes here with one
        raise LookupError("no approval in this turn")
    approval = run_approval(runtime.context, approval_id, state["approval_answer"])
    return {"approval": approval.model_dump(mode="json")}


def run_approval(svc: TurnServices, approval_id: str, answer: dict[str, Any]) -> Approval:
    """Apply a person's answer to a held action, exactly once (the store guards the status)."""
    approval = svc.store.get_approval(approval_id)
    if approval is None:
        raise LookupError(f"approval {approval_id} not found")
    if approval.status != "pending":
        return approval
    by, note = str(answer.get("by") or "unknown"), answer.get("note")
    effects = TurnEffects()
    if not answer.get("approve"):
        return svc.store.decide_approval(
            approval, "rejected", by=by, note=note, result={}, effects=effects
        )
    check = recheck_later(
        svc.policy.get(), svc.lifecycle.stages, svc.store,
        LaterSend(kind="approval", action=ACTION.validate_python(approval.action),
                  customer_id=approval.customer_id, conversation_id=approval.conversation_id,
                  is_reply=bool(approval.is_reply)),
        svc.clock.now(),
    )
    verdict, action, profile = check.verdict, check.action, check.profile
    if profile is None:
        raise LookupError(f"customer {approval.customer_id} not found")
    if action is None:
        return svc.store.decide_approval(
            approval, "blocked", by=by, note=note,
            result={"executed": False, "reason_codes": verdict.reason_codes,
                    "detail": verdict.detail},
            effects=effects,
        )
    conversation = svc.store.get_conversation(approval.conversation_id)
    if conversation is None:
        raise LookupError(f"conversation {approval.conversation_id} not found")
    ctx = ToolContext(
        profile=profile, conversation=conversation, inbound_channel=None,
        inbound_message_id=approval.inbound_message_id, decision_id=approval.decision_id,
        clock=svc.clock, ids=svc.ids, effects=effects, deliver_at=verdict.deliver_at,
        # the relay reads it: a person approved this message (an open handoff does not stop it)
        meta={APPROVED_BY: by},
    )
    result = run_tool(action, ctx)
    return svc.store.decide_approval(
        approval, "approved", by=by, note=note, result={"executed": True, **result},
        effects=effects,
    )
