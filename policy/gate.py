"""The policy gate: every proposed action gets a verdict before any tool runs.

The model proposes; this code disposes. The gate sees the turn's facts (profile, consent,
handoff state, lifecycle) and never the model's reasoning, so a customer who talks the model
into proposing something cannot talk the gate into allowing it.

Reason codes (stable strings, stored in the audit trail):

- ``no_identity``: no address for the customer on that channel
- ``consent_revoked`` / ``no_consent``: the customer opted out / never opted in on that channel
- ``opt_out_confirmation``: the one message allowed after an opt-out
- ``handoff_active``: a human owns the conversation; the bot does not answer for them
- ``already_escalated``: the conversation already has an open handoff
- ``duplicate_action``: the same kind of action was already allowed this turn
- ``trimmed_to_channel_limit``: the text was cut to the channel's length limit
- ``unknown_stage`` / ``field_not_writable`` / ``protected_field`` / ``too_long``
- ``allowed``: nothing stood in the way
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

from journey.domain import (
    Channel,
    ConsentStatus,
    CustomerProfile,
    EscalateToHuman,
    Handoff,
    ProposedAction,
    SendMessage,
    UpdateCrm,
    Verdict,
)

#: Longest text per channel (SMS: three concatenated segments).
CHANNEL_MAX_CHARS: dict[Channel, int] = {
    "web_chat": 2000,
    "email": 10000,
    "sms": 459,
    "whatsapp": 4096,
}
#: CRM fields the bot may write. Everything else is owned by people or other systems.
WRITABLE_FIELDS = frozenset(
    {
        "company", "role", "seats", "needs", "budget", "timeline", "use_case",
        "plan_interest", "competitor", "nps", "churn_reason", "industry",
    }
)
PROTECTED_FIELDS = frozenset({"email", "phone", "plan", "consent", "customer_id", "id", "credit"})
MAX_NOTE_CHARS = 2000


@dataclass
class GateInput:
    profile: CustomerProfile
    inbound_channel: Channel
    intent: str
    stages: Sequence[str]
    active_handoff: Handoff | None


@dataclass
class GateResult:
    verdicts: list[Verdict]
    #: The actions as they will run (modified where the verdict says modify), by index.
    approved: dict[int, BaseModel] = field(default_factory=dict)
    #: Consent changes the gate itself makes (an opt-out revokes at once).
    consent_changes: dict[Channel, ConsentStatus] = field(default_factory=dict)


def evaluate(actions: Sequence[ProposedAction], facts: GateInput) -> GateResult:
    result = GateResult(verdicts=[])
    opted_out = facts.intent == "opt_out"
    if opted_out:
        result.consent_changes[facts.inbound_channel] = "revoked"
    # a reply in the turn that escalates acknowledges the handoff
    escalating = facts.active_handoff is None and any(
        isinstance(a, EscalateToHuman) for a in actions
    )
    escalated = False
    seen_sends: set[Channel] = set()
    crm_done = False

    for i, action in enumerate(actions):
        codes: list[str]
        outcome = "allow"
        detail = ""
        final: BaseModel | None = action

        if isinstance(action, SendMessage):
            codes, outcome, detail, final = _check_send(
                action, facts, opted_out=opted_out, escalating=escalating, seen=seen_sends
            )
            if outcome != "deny":
                seen_sends.add(action.channel)
        elif isinstance(action, EscalateToHuman):
            if facts.active_handoff is not None or escalated:
                codes, outcome = ["already_escalated"], "deny"
                detail = "the conversation already has an open handoff"
            else:
                codes = ["allowed"]
                escalated = True
        elif isinstance(action, UpdateCrm):
            codes, outcome, detail, final = _check_crm(action, facts)
            if outcome != "deny" and crm_done:
                codes, outcome, detail = ["duplicate_action"], "deny", "one CRM update per turn"
            crm_done = crm_done or outcome != "deny"
        else:  # pragma: no cover - the union is closed
            codes, outcome, detail = ["unknown_tool"], "deny", type(action).__name__

        result.verdicts.append(
            Verdict(
                action_index=i,
                tool=action.tool,
                outcome=outcome,  # type: ignore[arg-type]
                reason_codes=codes,
                detail=detail,
            )
        )
        if outcome != "deny" and final is not None:
            result.approved[i] = final
    return result


def _check_send(
    action: SendMessage,
    facts: GateInput,
    *,
    opted_out: bool,
    escalating: bool,
    seen: set[Channel],
) -> tuple[list[str], str, str, BaseModel | None]:
    profile = facts.profile
    channel = action.channel
    if profile.address_for(channel) is None:
        return ["no_identity"], "deny", f"no address for the customer on {channel}", None
    if channel in seen:
        return ["duplicate_action"], "deny", f"one message per channel per turn ({channel})", None
    if facts.active_handoff is not None:
        return (
            ["handoff_active"],
            "deny",
            f"handoff {facts.active_handoff.id} to {facts.active_handoff.queue} is open",
            None,
        )
    if opted_out:
        if channel == facts.inbound_channel:
            confirm = action.model_copy(update={"purpose": "transactional"})
            return ["opt_out_confirmation"], "modify", "the one confirmation after opt-out", confirm
        return ["consent_revoked"], "deny", "the customer just opted out", None
    consent = profile.consent_for(channel)
    if consent == "revoked" and action.purpose != "transactional":
        return ["consent_revoked"], "deny", f"the customer opted out of {channel}", None
    if channel != facts.inbound_channel and consent != "granted":
        return ["no_consent"], "deny", f"no consent to contact the customer on {channel}", None
    limit = CHANNEL_MAX_CHARS[channel]
    if len(action.text) > limit:
        trimmed = _trim(action.text, limit)
        return (
            ["trimmed_to_channel_limit"],
            "modify",
            f"{len(action.text)} > {limit} characters",
            action.model_copy(update={"text": trimmed}),
        )
    codes = ["allowed"]
    if escalating:
        codes = ["handoff_acknowledgement"]
    return codes, "allow", "", action


def _check_crm(
    action: UpdateCrm, facts: GateInput
) -> tuple[list[str], str, str, BaseModel | None]:
    if action.stage is not None and action.stage not in facts.stages:
        return ["unknown_stage"], "deny", f"{action.stage!r} is not a lifecycle stage", None
    protected = sorted(set(action.fields) & PROTECTED_FIELDS)
    if protected:
        return ["protected_field"], "deny", f"the bot may not write {protected}", None
    for text in (action.note, action.task):
        if text and len(text) > MAX_NOTE_CHARS:
            return ["too_long"], "deny", f"note/task over {MAX_NOTE_CHARS} characters", None
    unknown = sorted(set(action.fields) - WRITABLE_FIELDS)
    if unknown:
        kept = {k: v for k, v in action.fields.items() if k in WRITABLE_FIELDS}
        final = action.model_copy(update={"fields": kept})
        if not (kept or action.stage or action.note or action.task):
            return ["field_not_writable"], "deny", f"not writable: {unknown}", None
        return ["field_not_writable"], "modify", f"dropped {unknown}", final
    return ["allowed"], "allow", "", action


def _trim(text: str, limit: int) -> str:
    cut = text[: limit - 1]
    for sep in (". ", "! ", "? ", "\n"):
        pos = cut.rfind(sep)
        if pos > limit // 2:
            return cut[: pos + 1].rstrip()
    return cut.rstrip() + "…"
