"""The write tools: which actions wait for a person's approval, and what the bot may write to
the CRM."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from core.domain import Priority, Purpose
from policy.model_base import Strict

Tool = Literal["send_message", "update_crm", "escalate_to_human", "issue_credit"]


class ApprovalRule(Strict):
    """Actions of ``tool`` need a human's approval (when the optional conditions hold)."""

    tool: Tool
    min_amount: float | None = None
    purposes: list[Purpose] = Field(default_factory=list)
    priorities: list[Priority] = Field(default_factory=list)


class StageMove(Strict):
    """A stage change a brain may make on its own (``from: "*"`` is any stage)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    from_stage: str = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)

    def allows(self, current: str, target: str) -> bool:
        return self.to == target and self.from_stage in ("*", current)


class CrmPolicy(Strict):
    writable_fields: list[str] = Field(default_factory=list)
    protected_fields: list[str] = Field(
        default_factory=lambda: ["email", "phone", "consent", "customer_id", "id", "plan"]
    )
    max_note_chars: int = Field(2000, gt=0)
    #: Stage changes a brain may make without a lifecycle rule (the declared rules in
    #: prompts/lifecycle.yaml always may); empty: only the rules move customers.
    model_stage_moves: list[StageMove] = Field(default_factory=list)
