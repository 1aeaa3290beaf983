"""The graph's typed state. Values are JSON-ready dicts so every checkpointer can store them."""

from __future__ import annotations

from typing import Any, TypedDict


class TurnState(TypedDict, total=False):
    # input: one inbound message, already stored
    conversation_id: str
    customer_id: str
    inbound: dict[str, Any] | None  # core.domain.Message; None when a journey woke us
    trigger: dict[str, Any] | None  # the journey job's payload + job_id (proactive turns)
    decision_id: str
    started: float  # perf_counter at turn start, for the recorded latency
    # load_context
    profile: dict[str, Any]  # CustomerProfile
    recent: list[dict[str, Any]]  # Message, oldest first, all channels
    history: list[dict[str, Any]]  # MemoryHit, retrieved for this customer only
    events: list[dict[str, Any]]  # Event, newest first
    active_handoff: dict[str, Any] | None  # Handoff
    handback: dict[str, Any] | None  # journey.handoffs.Handback: people handed it back lately
    # understand
    signals: dict[str, Any]  # agent.understand.Signals
    rule_stage: str
    rule_name: str | None
    opt_out: bool  # the policy reads the message as an opt-out (keyword, or intent + cue)
    opt_in: bool
    # decide
    output: dict[str, Any]  # DecisionOutput
    brain: dict[str, Any]  # BrainInfo
    proposed: list[dict[str, Any]]  # ProposedAction; policy_gate appends what it adds
    rejected: list[dict[str, Any]]  # RejectedCall: invalid tool calls of the model
    summary: str  # handoff summary, for an escalation the policy adds
    # policy_gate
    verdicts: list[dict[str, Any]]  # Verdict
    approved: dict[str, dict[str, Any]]  # action index → action as it will run
    held: dict[str, dict[str, Any]]  # action index → action waiting for approval
    consent_changes: dict[str, dict[str, str]]  # channel → purpose → status
    policy_inputs: dict[str, Any]  # the facts the engine decided on (audit)
    policy_version: str
    # act
    effects: dict[str, Any]  # memory.store.TurnEffects
    approval_id: str | None  # the held action's approval, if any
    # respond
    reply: str | None
    # record
    decision: dict[str, Any]  # Decision
    # await_approval / execute_approval
    approval_answer: dict[str, Any]  # {"approve": bool, "by": str, "note": str | None}
    approval: dict[str, Any]  # Approval, as decided
