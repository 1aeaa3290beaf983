"""issue_credit (WRITE): credit the current customer's account. Runs only after a person
approved it (the default policy holds every credit for approval)."""

from __future__ import annotations

from typing import Any

from core.domain import IssueCredit
from core.effects import Activity
from tools.base import ToolContext


def issue_credit(args: IssueCredit, ctx: ToolContext) -> dict[str, Any]:
    # added to the balance inside the transaction, so two approvals at once both count
    ctx.effects.crm.increments["credit_balance"] = args.amount
    activity = Activity(
        id=ctx.ids("act"), kind="credit", body={"amount": args.amount, "reason": args.reason}
    )
    ctx.effects.activities.append(activity)
    return {"credited": args.amount, "activity_id": activity.id}
