"""The graph's typed state. Values are JSON-ready dicts so every checkpointer can store them."""

from __future__ import annotations

from typing import Any, TypedDict


class TurnState(TypedDict, total=False):
    # input: one inbound message, already stored
    conversation_id: str
    customer_id: str
    inbound: dict[str, Any]  # journey.domain.Message
    decision_id: str
    started: float  # perf_counter at turn start, for the recorded latency
    # load_context
    profile: dict[str, Any]  # CustomerProfile
    recent: list[dict[str, Any]]  # Message, oldest first, all channels
    history: list[dict[str, Any]]  # MemoryHit, retrieved for this customer only
    events: list[dict[str, Any]]  # Event, newest first
    active_handoff: dict[str, Any] | None  # Handoff
    # understand
    signals: dict[str, Any]  # agent.understand.Signals
    rule_stage: str
    rule_name: str | None
    # decide
    output: dict[str, Any]  # DecisionOutput
    brain: dict[str, Any]  # BrainInfo
    proposed: list[dict[str, Any]]  # ProposedAction
    # policy_gate
    verdicts: list[dict[str, Any]]  # Verdict
    approved: dict[str, dict[str, Any]]  # action index → action as it will run
    consent_changes: dict[str, str]
    # act
    effects: dict[str, Any]  # journey.store.TurnEffects
    # respond
    reply: str | None
    # record
    decision: dict[str, Any]  # Decision
