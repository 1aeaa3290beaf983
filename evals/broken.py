"""A deliberately broken agent: the policy gate replaced by a pass-through that approves every
candidate unchanged. Never wired into the app; it exists to prove the eval gate catches an
unguarded agent (tests/evals/test_evals.py) and as the baseline of bench/gate_overhead.py."""

from __future__ import annotations

from typing import Any

from agent.graph import make_builder
from journey.runtime import Container
from journey.turns import Orchestrator


def pass_through_gate(state: dict[str, Any], runtime: Any) -> dict[str, Any]:
    proposed = state["proposed"]
    return {
        "verdicts": [
            {"action_index": i, "tool": a["tool"], "outcome": "allow", "reason_codes": ["allowed"]}
            for i, a in enumerate(proposed)
        ],
        "approved": {str(i): a for i, a in enumerate(proposed)},
        "held": {},
        "consent_changes": {},
        "policy_inputs": {},
        "policy_version": "none",
    }


def without_policy(container: Container) -> None:
    """Swap the container's orchestrator for one whose graph has no policy gate."""
    graph = make_builder(pass_through_gate).compile(checkpointer=container.checkpointer)
    container.orchestrator = Orchestrator(container.orchestrator.services, graph)
