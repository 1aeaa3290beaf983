"""act: the approved WRITE tools run; the held ones wait for a person."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from langgraph.runtime import Runtime

from agent.context import TurnServices
from agent.nodes.turn import ACTION, state_maybe_inbound, state_source_id, tool_context
from agent.state import TurnState
from core.domain import (
    Approval,
    Verdict,
)
from core.effects import Activity, TurnEffects
from policy.later import OPT_OUT_CONFIRMATION
from tools import ToolError, run_tool


def act(state: TurnState, runtime: Runtime[TurnServices]) -> dict[str, Any]:
    """Run the approved WRITE tools and hold the ones that wait for a person. Their effects
    are committed with the decision."""
    svc = runtime.context
    effects = TurnEffects()
    inbound = state_maybe_inbound(state)
    channel = inbound.channel if inbound else None
    consent = state["consent_changes"]
    effects.crm.consent.update(consent)  # type: ignore[arg-type]
    if consent and inbound is not None:  # an opt-out or opt-in keyword: the ledger's evidence
        effects.crm.consent_source, effects.crm.consent_by = "keyword", "customer"
        effects.crm.consent_evidence = f"message {inbound.id}"
    ctx = tool_context(state, svc, effects)
    verdicts = [Verdict.model_validate(v) for v in state["verdicts"]]
    approval_id = None
    for verdict in verdicts:
        key = str(verdict.action_index)
        held = state["held"].get(key)
        if held is not None:
            approval_id = svc.ids("apv")
            verdict.approval_id = approval_id
            effects.approvals.append(
                Approval(
                    id=approval_id, decision_id=state["decision_id"],
                    conversation_id=state["conversation_id"], customer_id=state["customer_id"],
                    inbound_message_id=state_source_id(state), action=held,
                    reason_codes=verdict.reason_codes, created_at=svc.clock.now(),
                    deliver_at=verdict.deliver_at,
                    is_reply=_is_reply(held, channel, verdict),
                )
            )
            continue
        approved = state["approved"].get(key)
        if approved is None:
            continue
        action = ACTION.validate_python(approved)
        is_reply = _is_reply(approved, channel, verdict)
        run_ctx = replace(ctx, deliver_at=verdict.deliver_at, is_reply=is_reply)
        if "confirm" in verdict.modifications:
            # the relay lets this one message through the channel the customer just left
            run_ctx = replace(run_ctx, meta={**ctx.meta, OPT_OUT_CONFIRMATION: True})
        try:
            verdict.result = run_tool(action, run_ctx)
            verdict.executed = True
        except ToolError as exc:
            verdict.outcome = "deny"
            verdict.step = "execution"
            verdict.reason_codes.append("tool_error")
            verdict.detail = str(exc)
    if consent:
        effects.activities.append(Activity(id=svc.ids("act"), kind="consent", body=consent))
    return {
        "verdicts": [v.model_dump(mode="json") for v in verdicts],
        "effects": effects.model_dump(mode="json"),
        "approval_id": approval_id,
    }


def _is_reply(action: dict[str, Any], inbound: str | None, verdict: Verdict) -> bool:
    """The engine's reading: a message on the customer's channel, not marketing, not switched."""
    return (
        inbound is not None
        and action.get("tool") == "send_message" and action.get("channel") == inbound
        and action.get("purpose") != "marketing"
        and "switch_channel" not in verdict.modifications
    )
