"""The graph's nodes, one module each; a node returns only the state keys it changes.

    load_context ─► understand_message ─► decide ─► policy_gate ─► act ─► respond ─► record
         └─► understand_signal ─► decide_journey (journey.py: a journey woke the agent)
    record ─► await_approval ─► execute_approval (approval.py: an action held for a person)

``turn.py`` holds what they all read off the state; ``routing.py`` the conditional edges.
"""

from agent.nodes.act import act
from agent.nodes.approval import await_approval, execute_approval, run_approval
from agent.nodes.decide import decide
from agent.nodes.journey import decide_journey, understand_signal
from agent.nodes.load_context import load_context
from agent.nodes.policy_gate import policy_gate
from agent.nodes.record import record
from agent.nodes.respond import respond
from agent.nodes.routing import route_after_record, route_decision, route_understanding
from agent.nodes.understand_message import understand_message

__all__ = [
    "act", "await_approval", "decide", "decide_journey", "execute_approval", "load_context",
    "policy_gate", "record", "respond", "route_after_record", "route_decision",
    "route_understanding", "run_approval", "understand_message", "understand_signal",
]
