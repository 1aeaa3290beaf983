"""The tool registry: name → spec. The graph's act node runs tools only through here."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from core.domain import EscalateToHuman, IssueCredit, SendMessage, UpdateCrm
from tools.base import ToolContext, ToolKind, ToolSpec
from tools.credit import issue_credit
from tools.crm import update_crm
from tools.handoff import escalate_to_human
from tools.messaging import send_message

TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec("send_message", ToolKind.WRITE, SendMessage, send_message),
        ToolSpec("update_crm", ToolKind.WRITE, UpdateCrm, update_crm),
        ToolSpec("escalate_to_human", ToolKind.WRITE, EscalateToHuman, escalate_to_human),
        ToolSpec("issue_credit", ToolKind.WRITE, IssueCredit, issue_credit),
    )
}


def run_tool(action: BaseModel, ctx: ToolContext) -> dict[str, Any]:
    spec = TOOLS[action.tool]  # type: ignore[attr-defined]
    return spec.run(action, ctx)
