"""The agent graph. ``builder`` is the uncompiled graph; :func:`build_graph` compiles it.

    load_context → understand → decide → policy_gate → act → respond → record

Every WRITE tool runs in ``act``, which only sees what ``policy_gate`` approved.
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph

from agent import nodes
from agent.context import TurnServices
from agent.state import TurnState

builder = StateGraph(TurnState, context_schema=TurnServices)
builder.add_node("load_context", nodes.load_context)
builder.add_node("understand", nodes.understand_message)
builder.add_node("decide", nodes.decide)
builder.add_node("policy_gate", nodes.policy_gate)
builder.add_node("act", nodes.act)
builder.add_node("respond", nodes.respond)
builder.add_node("record", nodes.record)
builder.add_edge(START, "load_context")
builder.add_edge("load_context", "understand")
builder.add_edge("understand", "decide")
builder.add_edge("decide", "policy_gate")
builder.add_edge("policy_gate", "act")
builder.add_edge("act", "respond")
builder.add_edge("respond", "record")
builder.add_edge("record", END)


def build_graph(checkpointer: BaseCheckpointSaver[Any] | None = None) -> Any:
    """Compile the agent graph; with a checkpointer, state is kept per conversation."""
    return builder.compile(checkpointer=checkpointer, name="journey-agent")
