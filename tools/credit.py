"""issue_credit (WRITE): credit the current customer's account. Runs only after a person
approved it (the default policy holds every credit for approval)."""

from __future__ import annotations

from typing import Any

from journey.domain import IssueCredit
from journey.store import Activity
from tools.base import ToolContext


def issue_credit(args: IssueCredit, ctx: ToolContext) -> dict[str, Any]:
    balance = float(ctx.profile.attributes.get("credit_balance") or 0) + args.amount
    ctx.effects.crm.fields["credit_balance"] = round(balance, 2)
    activity = Activity(
        id=ctx.ids("act"),
        kind="credit",
        body={"amount": args.amount, "reason": args.reason, "balance": round(balance, 2)},
    )
    ctx.effects.activities.append(activity)
    return {
        "credited": args.amount, "credit_balance": round(balance, 2), "activity_id": activity.id
    }
