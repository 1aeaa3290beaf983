"""update_crm (WRITE): the current customer's stage, fields, a note or a follow-up task."""

from __future__ import annotations

from typing import Any

from core.domain import UpdateCrm
from core.effects import Activity
from tools.base import ToolContext


def update_crm(args: UpdateCrm, ctx: ToolContext) -> dict[str, Any]:
    effects = ctx.effects
    done: dict[str, Any] = {}
    if args.stage and args.stage != ctx.profile.lifecycle_stage:
        effects.crm.stage = args.stage
        effects.activities.append(
            Activity(
                id=ctx.ids("act"),
                kind="stage_change",
                body={"from": ctx.profile.lifecycle_stage, "to": args.stage},
            )
        )
        done["stage"] = args.stage
    if args.fields:
        effects.crm.fields.update(args.fields)
        effects.activities.append(
            Activity(id=ctx.ids("act"), kind="fields", body=dict(args.fields))
        )
        done["fields"] = sorted(args.fields)
    if args.note:
        effects.activities.append(
            Activity(id=ctx.ids("act"), kind="note", body={"text": args.note})
        )
        done["note"] = True
    if args.task:
        effects.activities.append(
            Activity(id=ctx.ids("act"), kind="task", body={"text": args.task})
        )
        done["task"] = True
    return done
