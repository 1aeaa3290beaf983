"""The agent graph. ``builder`` is the uncompiled graph; :func:`build_graph` compiles it.

    load_context → understand → decide → policy_gate → act → respond → record
         │                                  ▲                                │ an action held
         └─► understand_signal → decide_journey (a journey woke the agent)   ▼ for approval
                                                    await_approval (interrupt) → execute_approval

Every WRITE tool runs in ``act`` (only what ``policy_gate`` approved) or, for an action the
policy holds for a person, in ``execute_approval`` after the turn is resumed with the answer.
Each turn is its own thread (``turn:<inbound message id>``), so a waiting approval never blocks
the conversation's next message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph

from agent import nodes
from agent.context import TurnServices
from agent.state import TurnState
from memory.checkpoints import SlimCheckpointer

#: How a turn is run: one checkpoint, when the run ends (a pause for approval, or the end),
#: not one per step; the steps in between serve no restart (a turn that dies mid-way is run
#: again from its start by its turn job).
DURABILITY = "exit"
#: What a turn that needs no approval keeps in its checkpoint: its input (the message, or the
#: journey's trigger) and the decision it recorded; not the context it read.
FINISHED_TURN_KEEPS = frozenset({"conversation_id", "customer_id", "inbound", "trigger",
                                 "decision_id", "decision"})


def make_builder(
    policy_gate: Callable[..., dict[str, Any]] = nodes.policy_gate,
) -> StateGraph[TurnState, TurnServices, TurnState, TurnState]:
    """The graph's builder. ``policy_gate`` is replaceable only for bench/ measurements."""
    graph = StateGraph(TurnState, context_schema=TurnServices)
    graph.add_node("load_context", nodes.load_context)
    graph.add_node("understand", nodes.understand_message)
    graph.add_node("understand_signal", nodes.understand_signal)
    graph.add_node("decide", nodes.decide)
    graph.add_node("decide_journey", nodes.decide_journey)
    graph.add_node("policy_gate", policy_gate)
    graph.add_node("act", nodes.act)
    graph.add_node("respond", nodes.respond)
    graph.add_node("record", nodes.record)
    graph.add_node("await_approval", nodes.await_approval)
    graph.add_node("execute_approval", nodes.execute_approval)
    graph.add_edge(START, "load_context")
    graph.add_conditional_edges("load_context", nodes.route_understanding)
    graph.add_conditional_edges("understand", nodes.route_decision)
    graph.add_conditional_edges("understand_signal", nodes.route_decision)
    graph.add_edge("decide", "policy_gate")
    graph.add_edge("decide_journey", "policy_gate")
    graph.add_edge("policy_gate", "act")
    graph.add_edge("act", "respond")
    graph.add_edge("respond", "record")
    graph.add_conditional_edges("record", nodes.route_after_record)
    graph.add_edge("await_approval", "execute_approval")
    graph.add_edge("execute_approval", END)
    return graph


builder = make_builder()


def build_graph(checkpointer: BaseCheckpointSaver[Any] | None = None) -> Any:
    """Compile the agent graph; the checkpointer keeps paused turns across restarts.

    A turn held for approval is checkpointed in full (its pause must survive a restart); any
    other keeps only :data:`FINISHED_TURN_KEEPS` (run it with ``durability=DURABILITY``)."""
    if checkpointer is not None:
        checkpointer = SlimCheckpointer(checkpointer, full_when="approval_id",
                                        keep=FINISHED_TURN_KEEPS)
    return builder.compile(checkpointer=checkpointer, name="journey-agent")


def thread_config(source_id: str) -> dict[str, Any]:
    """A turn's thread: ``turn:<inbound message id>``, or ``turn:<job id>`` when proactive."""
    return {"configurable": {"thread_id": f"turn:{source_id}"}}
