"""The policy engine: every candidate action gets a verdict before any tool runs.

The model proposes; this code disposes. The engine sees the turn's facts (profile, consent,
local time, what was already sent, what code read off the message) and never the model's
reasoning, so a customer who talks the model into proposing something cannot talk the engine
into allowing it.

Arbitration, per candidate, in priority order (escalations, credits, CRM, then messages:
transactional, service, marketing; the reply before other channels):

1. **eligibility**: may this happen at all? (identity, consent per purpose, opt-out, channel
   availability, an open handoff). A proactive message may switch to another channel.
2. **applicability**: is now the time? (quiet hours defer; frequency caps suppress)
3. **suitability**: is the content acceptable? (offers beyond limits, forbidden claims, other
   people's data: a reply is rewritten from a safe template, a proactive message blocked;
   Markdown and length fitted to the channel; CRM fields and stages checked)
4. **priority**: one message per channel, one CRM update, one escalation per turn.
5. **approval**: actions the policy lists wait for a person.

Each verdict is ``allow``, ``modify`` (defer, switch channel, rewrite, trim, ...) or ``deny``,
with stable reason codes (listed in README.md, section Policy).

The checks live by concern beside this module: ``rules_consent`` (opt-out words, channel
eligibility and switching), ``rules_messages`` (a message's verdict), ``rules_handoff``
(escalations and routing), ``rules_records`` (credits and CRM updates), ``rules_text`` (free
text a write tool stores); the facts and verdict types in ``facts``. Every name stays importable
from here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from core.domain import (
    Channel,
    EscalateToHuman,
    IssueCredit,
    ProposedAction,
    Purpose,
    SendMessage,
    UpdateCrm,
    Verdict,
)
from policy.contact import zone_for
from policy.escalation import Escalation, required_escalation, stalled
from policy.facts import Arbitration, Facts, Judgement, TurnState
from policy.model import Policy
from policy.rules_consent import is_opt_in, is_opt_out
from policy.rules_handoff import MAX_HANDOFF_TEXT, PRIORITIES, judge_escalation
from policy.rules_messages import judge_message
from policy.rules_records import judge_credit, judge_crm

__all__ = [
    "MAX_HANDOFF_TEXT",
    "PRIORITIES",
    "Arbitration",
    "Facts",
    "PolicyEngine",
    "is_opt_in",
    "is_opt_out",
    "ledger_horizon",
]


#: A reply that tells the customer people take over (kept when the policy escalates).
_HANDOFF_WORDS = re.compile(
    r"\b(team|colleagues?|person|human|agents?|specialists?|someone|connect\w*|hand\w* (you )?"
    r"over|transfer\w*)\b", re.IGNORECASE,
)
_PURPOSE_RANK: dict[Purpose, int] = {"transactional": 0, "service": 1, "marketing": 2}
_TOOL_RANK = {"escalate_to_human": 0, "issue_credit": 1, "update_crm": 2, "send_message": 3}


class PolicyEngine:
    """Arbitrates one turn's candidates under one policy. Cheap to build; holds no state."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    # --- the whole turn ------------------------------------------------------------------

    def arbitrate(self, proposed: Sequence[ProposedAction], facts: Facts) -> Arbitration:
        policy = self.policy
        msg = facts.message
        inbound = facts.inbound_channel
        profile = facts.profile
        zone = zone_for(profile.timezone, _default_tz(policy))
        actions: list[ProposedAction] = list(proposed)
        added: set[int] = set()

        opt_out = inbound is not None and msg.opt_out
        opt_in = inbound is not None and msg.opt_in and not opt_out
        already_out = inbound is not None and profile.consent_for(inbound) == "revoked"
        result = Arbitration(actions=actions, verdicts=[], stalled=stalled(msg, policy.escalation))
        if opt_out and inbound is not None:
            result.consent_changes[inbound] = {"service": "revoked", "marketing": "revoked"}
        if opt_in and inbound is not None and already_out:
            result.consent_changes[inbound] = {"service": "granted"}
        # after an opt-in the customer is reachable on that channel again
        consent_now = profile
        if opt_in and already_out and inbound is not None:
            consent_now = profile.model_copy(
                update={"consent": {**profile.consent, inbound: profile.consent[inbound]
                                    .model_copy(update={"service": "granted"})}}
            )

        # escalation rules: code decides whether this turn goes to a human
        escalation = None if (
            facts.active_handoff or facts.approved_by_person or facts.delivery) else (
            required_escalation(msg, policy.escalation)
        )
        result.escalation = escalation
        # the model did not see this escalation coming: a reply that does not say people take
        # over ("How can I help?") becomes the queue's acknowledgement (recorded as a rewrite)
        rewrite_ack: int | None = None
        if escalation and not any(isinstance(a, EscalateToHuman) for a in actions):
            rewrite_ack = next((i for i, a in enumerate(actions)
                                if isinstance(a, SendMessage) and a.channel == inbound
                                and not _HANDOFF_WORDS.search(a.text)), None)
            actions.append(
                EscalateToHuman(
                    queue=escalation.queue, priority=escalation.priority,
                    reason=escalation.reason,
                    summary=facts.summary or msg.text,
                )
            )
            added.add(len(actions) - 1)
        if escalation and inbound is not None and not any(
            isinstance(a, SendMessage) and a.channel == inbound for a in actions
        ):
            actions.append(
                SendMessage(
                    channel=inbound, text=policy.escalation.acknowledgement.get(
                        escalation.queue, policy.escalation.acknowledgement["support"]),
                )
            )
            added.add(len(actions) - 1)

        state = TurnState(
            ledger=list(facts.ledger),
            escalating=False,
        )
        order = sorted(
            range(len(actions)), key=lambda i: self._rank(actions[i], inbound, facts.origin)
        )
        verdicts: dict[int, Verdict] = {}
        for i in order:
            action = actions[i]
            if isinstance(action, EscalateToHuman):
                j = judge_escalation(policy, action, facts, escalation, state)
            elif isinstance(action, IssueCredit):
                j = judge_credit(policy, action, facts, state)
            elif isinstance(action, UpdateCrm):
                j = judge_crm(policy, action, facts, state)
            elif i == rewrite_ack and escalation and isinstance(action, SendMessage):
                ack = policy.escalation.acknowledgement.get(
                    escalation.queue, policy.escalation.acknowledgement["support"])
                j = judge_message(
                    policy, action.model_copy(update={"text": ack}), facts, consent_now, zone,
                    state, opt_out=opt_out, already_out=already_out, added=True,
                )
                if j.outcome != "deny":
                    j.modify("suitability", "rewrite", "acknowledges_escalation",
                             f"escalation rule {escalation.rule}: the reply says who takes over")
            else:
                j = judge_message(
                    policy, action, facts, consent_now, zone, state,
                    opt_out=opt_out, already_out=already_out, added=i in added,
                )
            if j.outcome != "deny" and j.final is not None and not (
                    facts.approved_by_person or facts.delivery):
                self._approval(j, state)
            verdict = Verdict(
                action_index=i,
                tool=action.tool,
                outcome=j.outcome,  # type: ignore[arg-type]
                reason_codes=j.codes or ["allowed"],
                detail=j.detail,
                step=j.step,
                modifications=j.mods,
                deliver_at=j.deliver_at,
                added_by_policy=i in added,
                final=j.final.model_dump(mode="json")
                if j.outcome == "modify" and j.final is not None else None,
            )
            verdicts[i] = verdict
            if j.outcome != "deny" and j.final is not None:
                final = j.final  # type: ignore[assignment]
                if "approval_required" in j.codes:
                    result.held[i] = final  # type: ignore[assignment]
                else:
                    result.approved[i] = final  # type: ignore[assignment]
        result.verdicts = [verdicts[i] for i in range(len(actions))]
        result.inputs = self._inputs(facts, zone, escalation, opt_out, opt_in, result.stalled)
        return result

    @staticmethod
    def _rank(action: ProposedAction, inbound: Channel | None, origin: str) -> tuple[int, int, int]:
        """Escalations, credits, CRM, then messages: the reply first, then by purpose (a
        transactional claim by the model ranks as service)."""
        if isinstance(action, SendMessage):
            purpose = action.purpose
            if origin == "model" and purpose == "transactional":
                purpose = "service"
            reply = action.channel == inbound and purpose == "service"
            return (_TOOL_RANK["send_message"], 0 if reply else 1, _PURPOSE_RANK[purpose])
        return (_TOOL_RANK[action.tool], 0, 0)

    # --- approval ---------------------------------------------------------------------------

    def _approval(self, j: Judgement, state: TurnState) -> None:
        action = j.final
        for rule in self.policy.approvals:
            if getattr(action, "tool", None) != rule.tool:
                continue
            if rule.min_amount is not None and getattr(action, "amount", 0) < rule.min_amount:
                continue
            if rule.purposes and getattr(action, "purpose", None) not in rule.purposes:
                continue
            if rule.priorities and getattr(action, "priority", None) not in rule.priorities:
                continue
            if state.held:
                j.deny("approval", "one_approval_per_turn",
                       "another action of this turn already waits for approval")
                return
            state.held = True
            j.step = "approval"
            j.codes.append("approval_required")
            j.detail = j.detail or f"policy: {rule.tool} needs a person's approval"
            return

    def recheck(
        self, action: ProposedAction, facts: Facts
    ) -> tuple[Verdict, ProposedAction | None]:
        """A held action, when a person approves it: the same arbitration under the policy in
        force and the facts of now (consent, channel, caps, quiet hours, content, an open
        handoff for an escalation), without the approval step: this is the approval. Returns
        the verdict and the action as it may run (None: no longer allowed)."""
        result = self.arbitrate([action], replace(facts, approved_by_person=True))
        return result.verdicts[0], result.approved.get(0)

    # --- audit ------------------------------------------------------------------------------

    def _inputs(
        self,
        facts: Facts,
        zone: Any,
        escalation: Escalation | None,
        opt_out: bool,
        opt_in: bool,
        is_stalled: bool,
    ) -> dict[str, Any]:
        msg = facts.message
        now = facts.now
        day_ago, week_ago = now - timedelta(days=1), now - timedelta(days=7)
        ledger = facts.ledger
        return {
            "now": now.isoformat(),
            "timezone": zone.key,
            "local_time": now.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"),
            "inbound_channel": facts.inbound_channel,
            "origin": facts.origin,
            "consent": {k: v.model_dump() for k, v in facts.profile.consent.items()},
            "identities": sorted({i.kind for i in facts.profile.identities}),
            "channels_down": [
                c for c, p in self.policy.contact.channels.items() if not p.available
            ],
            "signals": {
                "intent": msg.intent, "confidence": round(msg.confidence, 3),
                "sentiment": msg.sentiment, "topic": msg.topic, "seats": msg.seats,
                "requirements": list(msg.requirements),
                "repeat_contacts": msg.repeat_contacts, "stalled_turns": msg.stalled_turns,
            },
            "opt_out": opt_out,
            "opt_in": opt_in,
            "stalled": is_stalled,
            "escalation_rule": None if escalation is None else {
                "name": escalation.rule, "queue": escalation.queue,
                "priority": escalation.priority, "matched": escalation.matched,
            },
            "active_handoff": facts.active_handoff.id if facts.active_handoff else None,
            "sent": {
                "last_24h": sum(1 for r in ledger if day_ago <= r.at <= now),
                "last_7d": sum(1 for r in ledger if week_ago <= r.at <= now),
                "scheduled": sum(1 for r in ledger if r.at > now),
            },
            "policy_version": self.policy.version,
            # what the grounding rule checked the bot's messages against (ids and scores)
            "knowledge": [{"id": i, "score": round(score, 3)}
                          for i, score in facts.grounding.knowledge] if facts.grounding else [],
        }


def ledger_horizon(policy: Policy) -> timedelta:
    """How far back the caps look: the longest rolling window, and at least two days."""
    windows = [c.window for c in policy.contact.caps if c.window is not None]
    return max([timedelta(days=2), *windows])


def _default_tz(policy: Policy) -> str:
    quiet = policy.contact.quiet_hours
    return quiet.default_timezone if quiet is not None else "UTC"

