"""The verdicts on the bot's other WRITE tools: a credit (``issue_credit``: within the limit,
one per turn, not while a person owns the conversation) and a CRM update (``update_crm``: known
stages, no going backwards, only the stage moves a rule or the policy allows, writable fields,
free text through the content rules, one per turn)."""

from __future__ import annotations

from typing import Any

from core.domain import IssueCredit, UpdateCrm
from policy.facts import Facts, Judgement, TurnState
from policy.model import Policy
from policy.rules_text import free_text, stored_text


def judge_credit(
    policy: Policy, action: IssueCredit, facts: Facts, state: TurnState
) -> Judgement:
    j = Judgement(final=action)
    limit = policy.content.max_credit
    if facts.active_handoff is not None and not facts.approved_by_person:
        return j.deny("eligibility", "handoff_active", "a human owns the conversation")
    if action.amount > limit:
        return j.deny("suitability", "credit_over_limit",
                      f"{action.amount:g} > the {limit:g} the bot may issue")
    if state.credited:
        return j.deny("priority", "duplicate_action", "one credit per turn")
    reason = free_text(policy, action.reason, "reason", facts, j,
                       "proposed by the model (its reason was withheld)")
    if reason != action.reason:
        j.final = action.model_copy(update={"reason": reason[:500]})
    state.credited = True
    return j


def judge_crm(policy: Policy, action: UpdateCrm, facts: Facts, state: TurnState) -> Judgement:
    crm = policy.crm
    j = Judgement(final=action)
    if action.stage is not None and action.stage not in facts.stages:
        return j.deny("suitability", "unknown_stage",
                      f"{action.stage!r} is not a lifecycle stage")
    protected = sorted(set(action.fields) & set(crm.protected_fields))
    if protected:
        return j.deny("suitability", "protected_field", f"the bot may not write {protected}")
    for text in (action.note, action.task):
        if text and len(text) > crm.max_note_chars:
            return j.deny("suitability", "too_long",
                          f"note/task over {crm.max_note_chars} characters")
    final = crm_text(policy, action, facts, j)
    current = facts.profile.lifecycle_stage
    if (
        action.stage is not None and current in facts.stages
        and list(facts.stages).index(action.stage) < list(facts.stages).index(current)
    ):
        final = final.model_copy(update={"stage": None})
        j.modify("suitability", "drop_fields", "stage_regression",
                 f"{current} → {action.stage} goes backwards")
    elif (
        final.stage is not None and final.stage != current
        and final.stage != facts.rule_stage and not facts.approved_by_person
        and not any(m.allows(current, final.stage) for m in crm.model_stage_moves)
    ):
        final = final.model_copy(update={"stage": None})
        j.modify("suitability", "drop_fields", "stage_not_allowed",
                 f"{current} → {action.stage}: no lifecycle rule moves it and the policy's "
                 "crm.model_stage_moves does not allow it")
    unknown = sorted(set(final.fields) - set(crm.writable_fields))
    if unknown:
        kept = {k: v for k, v in final.fields.items() if k in crm.writable_fields}
        final = final.model_copy(update={"fields": kept})
        j.modify("suitability", "drop_fields", "field_not_writable", f"dropped {unknown}")
    if not (final.stage or final.fields or final.note or final.task):
        return j.deny("suitability", j.codes[-1] if j.codes else "empty_update",
                      j.detail or "nothing to write")
    if state.crm_done:
        return j.deny("priority", "duplicate_action", "one CRM update per turn")
    state.crm_done = True
    j.final = final
    return j


def crm_text(policy: Policy, action: UpdateCrm, facts: Facts, j: Judgement) -> UpdateCrm:
    """The note, task and text fields as they may be stored: one that breaks the content
    rules is dropped, card numbers are masked."""
    update: dict[str, Any] = {}
    for name in ("note", "task"):
        value = getattr(action, name)
        if value:
            kept = stored_text(policy, value, name, facts, j)
            if kept != value:
                update[name] = kept
    fields: dict[str, Any] = {}
    for key, value in action.fields.items():
        if isinstance(value, str):
            kept = stored_text(policy, value, f"fields.{key}", facts, j)
            if kept is not None:
                fields[key] = kept
        elif isinstance(value, list):
            items = [stored_text(policy, v, f"fields.{key}", facts, j) for v in value]
            if None not in items:
                fields[key] = items
        else:
            fields[key] = value
    if fields != action.fields:
        update["fields"] = fields
    return action.model_copy(update=update) if update else action
