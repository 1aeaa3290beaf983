"""escalate_to_human (WRITE): open a handoff to the sales or support queue."""

from __future__ import annotations

from typing import Any

from core.domain import EscalateToHuman, Handoff
from tools.base import ToolContext


def escalate_to_human(args: EscalateToHuman, ctx: ToolContext) -> dict[str, Any]:
    handoff = Handoff(
        id=ctx.ids("hof"),
        conversation_id=ctx.conversation.id,
        customer_id=ctx.profile.id,
        queue=args.queue,
        reason=args.reason,
        summary=args.summary,
        priority=args.priority,
        decision_id=ctx.decision_id,
        created_at=ctx.clock.now(),
    )
    ctx.effects.handoffs.append(handoff)
    return {"handoff_id": handoff.id, "queue": handoff.queue, "priority": handoff.priority}
