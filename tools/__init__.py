"""Tools the agent may call. Every WRITE tool runs only after the policy gate allowed it.

The customer a tool acts on is never an argument: it is injected from the turn's context, so a
model cannot message or edit another customer whatever it is told.
"""

from tools.base import ToolContext, ToolError, ToolKind, ToolSpec
from tools.registry import TOOLS, run_tool

__all__ = ["TOOLS", "ToolContext", "ToolError", "ToolKind", "ToolSpec", "run_tool"]
