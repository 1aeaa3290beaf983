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
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from core.domain import (
    CHANNELS,
    Channel,
    ConsentStatus,
    CustomerProfile,
    EscalateToHuman,
    Handoff,
    IssueCredit,
    Modification,
    Priority,
    ProposedAction,
    Purpose,
    SendMessage,
    Step,
    UpdateCrm,
    Verdict,
)
from policy import content
from policy.contact import SentRecord, cap_exceeded, consent_problem, next_allowed, zone_for
from policy.escalation import (
    Escalation,
    MessageFacts,
    auto_queue,
    required_escalation,
    stalled,
    terms_pattern,
)
from policy.model import Policy, fmt_duration, keyword_form

PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high", "urgent")


#: A reply that tells the customer people take over (kept when the policy escalates).
_HANDOFF_WORDS = re.compile(
    r"\b(team|colleagues?|person|human|agents?|specialists?|someone|connect\w*|hand\w* (you )?"
    r"over|transfer\w*)\b", re.IGNORECASE,
)


def _merge_reasons(rule: str, model: str) -> str:
    """The rule's reason and the model's, once: when one says what the other says, the longer."""
    def plain(text: str) -> str:
        return " ".join(text.lower().removeprefix("the ").split())

    a, b = plain(rule), plain(model)
    if a in b or b in a:
        return model if len(b) > len(a) else rule
    return f"{rule} ({model})"


def _number(value: Any) -> float | None:
    """A profile attribute as a number (``"12000"`` and ``12000`` alike), else None."""
    if isinstance(value, bool):
        return None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
_PURPOSE_RANK: dict[Purpose, int] = {"transactional": 0, "service": 1, "marketing": 2}
_TOOL_RANK = {"escalate_to_human": 0, "issue_credit": 1, "update_crm": 2, "send_message": 3}
MAX_HANDOFF_TEXT = 4000


@dataclass
class Facts:
    """What the engine decides on. Built by the graph from the store and code signals."""

    profile: CustomerProfile
    message: MessageFacts
    #: The channel the customer wrote on; None for a proactive (journey) decision.
    inbound_channel: Channel | None
    now: datetime
    stages: Sequence[str]
    active_handoff: Handoff | None = None
    #: Messages already sent or scheduled for this customer (for the caps).
    ledger: Sequence[SentRecord] = ()
    #: A handoff summary for an escalation the engine adds itself.
    summary: str = ""
    #: ``model``: candidates came from the brain (it may not claim transactional purpose);
    #: ``system``: from a journey definition.
    origin: str = "model"
    #: A person approved this action (:meth:`PolicyEngine.recheck`): no approval step, no
    #: escalation rules, and an open handoff does not silence it (the person is the human).
    approved_by_person: bool = False
    #: The relay is about to deliver a message decided earlier (:mod:`policy.later`): it was
    #: already arbitrated, so no escalation rules and no approval step; it goes out as it is
    #: or not at all (no other channel, no rewrite), and only at an allowed time.
    delivery: bool = False
    #: What a person told the customer before handing the conversation back: the bot must not
    #: say it again.
    human_said: Sequence[str] = ()
    #: The stage the declared lifecycle rules give this turn (None: none fired): the only
    #: stage change a brain may make, besides the policy's ``crm.model_stage_moves``.
    rule_stage: str | None = None
    #: The customer's own messages this turn and just before: a CRM note or handoff summary
    #: may quote them without that counting as the bot's claim.
    customer_said: Sequence[str] = ()


@dataclass
class Arbitration:
    #: Every candidate: the proposed ones, then any the engine added.
    actions: list[ProposedAction]
    verdicts: list[Verdict]
    #: Candidates that run now, as they will run (modified where the verdict says so).
    approved: dict[int, ProposedAction] = field(default_factory=dict)
    #: Candidates that wait for a person's approval.
    held: dict[int, ProposedAction] = field(default_factory=dict)
    consent_changes: dict[Channel, dict[str, ConsentStatus]] = field(default_factory=dict)
    escalation: Escalation | None = None
    stalled: bool = False
    inputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Judgement:
    outcome: str = "allow"
    codes: list[str] = field(default_factory=list)
    detail: str = ""
    step: Step | None = None
    mods: list[Modification] = field(default_factory=list)
    final: BaseModel | None = None
    deliver_at: datetime | None = None

    def deny(self, step: Step, code: str, detail: str) -> _Judgement:
        self.outcome, self.step, self.final = "deny", step, None
        self.codes.append(code)
        self.detail = detail
        return self

    def modify(self, step: Step, mod: Modification, code: str, detail: str = "") -> None:
        self.outcome = "modify"
        self.step = step
        if mod not in self.mods:
            self.mods.append(mod)
        if code not in self.codes:
            self.codes.append(code)
        if detail:
            self.detail = f"{self.detail}; {detail}" if self.detail else detail

    def withheld(self, mod: Modification, argument: str, found: list[content.Violation]) -> None:
        """A free-text argument broke the content rules and was dropped or replaced."""
        for v in found:
            self.modify("suitability", mod, v.code, f"{argument}: {v.detail}")


def is_opt_out(
    text: str, message: MessageFacts, policy: Policy, channel: Channel | None = None
) -> bool:
    """A carrier keyword alone (on the keyword channels), or the classifier's opt-out with a
    cue word in the text."""
    consent = policy.contact.consent
    word = keyword_form(text)
    keywords = (*consent.opt_out_keywords, *consent.opt_out_keywords_extra)
    if word in keywords and (channel is None or channel in consent.keyword_channels):
        return True
    return (
        message.intent == "opt_out"
        and message.confidence >= consent.opt_out_intent_confidence
        and terms_pattern(tuple(consent.opt_out_cues)).search(content.normalise(text))
        is not None
    )


def is_opt_in(text: str, policy: Policy, channel: Channel | None = None) -> bool:
    consent = policy.contact.consent
    word = keyword_form(text)
    return word in consent.opt_in_keywords and (
        channel is None or channel in consent.keyword_channels
    )


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

        state = _TurnState(
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
                j = self._escalate(action, facts, escalation, state)
            elif isinstance(action, IssueCredit):
                j = self._credit(action, facts, state)
            elif isinstance(action, UpdateCrm):
                j = self._crm(action, facts, state)
            elif i == rewrite_ack and escalation and isinstance(action, SendMessage):
                ack = policy.escalation.acknowledgement.get(
                    escalation.queue, policy.escalation.acknowledgement["support"])
                j = self._send(
                    action.model_copy(update={"text": ack}), facts, consent_now, zone, state,
                    opt_out=opt_out, already_out=already_out, added=True,
                )
                if j.outcome != "deny":
                    j.modify("suitability", "rewrite", "acknowledges_escalation",
                             f"escalation rule {escalation.rule}: the reply says who takes over")
            else:
                j = self._send(
                    action, facts, consent_now, zone, state,
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

    # --- messages --------------------------------------------------------------------------

    def _send(
        self,
        action: SendMessage,
        facts: Facts,
        profile: CustomerProfile,
        zone: Any,
        state: _TurnState,
        *,
        opt_out: bool,
        already_out: bool,
        added: bool,
    ) -> _Judgement:
        policy = self.policy
        contact = policy.contact
        j = _Judgement(final=action)
        inbound = facts.inbound_channel
        on_inbound = inbound is not None and action.channel == inbound

        # eligibility (an opt-out is confirmed even while a human owns the conversation)
        if opt_out:
            if on_inbound and not already_out and not state.confirmed_opt_out:
                state.confirmed_opt_out = True
                state.used_channels.add(action.channel)
                confirmation = contact.consent.opt_out_confirmation
                j.final = action.model_copy(
                    update={"purpose": "transactional", "text": confirmation}
                )
                j.modify("eligibility", "confirm", "opt_out_confirmation",
                         "the one confirmation after an opt-out")
                return j
            return j.deny("eligibility", "consent_revoked", "the customer just opted out")
        if facts.active_handoff is not None and not facts.approved_by_person:
            h = facts.active_handoff
            return j.deny("eligibility", "handoff_active", f"handoff {h.id} to {h.queue} is open")
        purpose: Purpose = action.purpose
        if facts.origin == "model" and purpose == "transactional":
            purpose = "service"
            j.modify("eligibility", "repurpose", "purpose_downgraded",
                     "only the system sends transactional messages")
        if purpose == "service" and not on_inbound and content.is_promotional(action.text):
            purpose = "marketing"
            j.modify("eligibility", "repurpose", "promotional_content",
                     "a proactive promotional message is marketing")
        # a reply answers the customer on their channel; marketing is never a reply, and a
        # message switched onto the customer's channel stays proactive
        is_reply = on_inbound and purpose != "marketing"
        channel = action.channel
        problem = self._channel_problem(profile, channel, purpose, is_reply=is_reply)
        if problem is not None:
            code, detail = problem
            alternative = None
            if not is_reply and contact.switch_channels and not facts.delivery:
                alternative = self._switch(profile, purpose, state, exclude=channel)
            if alternative is None:
                return j.deny("eligibility", code, detail)
            j.modify("eligibility", "switch_channel", code, f"{detail}; sent on {alternative}")
            j.codes.append("switched_channel")
            channel = alternative

        # applicability
        at = facts.now
        deliver_at = None
        quiet = contact.quiet_hours
        if quiet is not None and purpose in quiet.purposes and not is_reply:
            allowed_at = next_allowed(facts.now, zone, quiet)
            if allowed_at > facts.now:
                deliver_at = at = allowed_at
                j.modify("applicability", "defer", "quiet_hours_deferred",
                         f"quiet hours in {zone.key}; deferred to {allowed_at.isoformat()}")
        if purpose != "transactional":
            for cap in contact.caps:
                if is_reply and not cap.include_replies:
                    continue
                if cap_exceeded(
                    cap, channel, purpose, at, state.ledger, zone,
                    count_replies=cap.include_replies,
                ):
                    return j.deny(
                        "applicability", "frequency_capped",
                        f"cap {cap.name}: {cap.max} per "
                        f"{'day' if cap.per else fmt_duration(cap.window)}",
                    )

        # suitability
        text = action.text
        if is_reply and facts.human_said and not facts.approved_by_person:
            earlier = content.repeats(text, facts.human_said)
            if earlier is not None:
                return j.deny("suitability", "repeats_human",
                              f"a person already told the customer: {earlier[:120]!r}")
        own = [i.value for i in profile.identities if i.kind in ("email", "phone")]
        found = content.violations(text, policy.content, own)
        if found and not added:
            codes = [v.code for v in found]
            detail = "; ".join(v.detail for v in found)
            if not is_reply:
                j.deny("suitability", codes[0], detail)
                j.codes.extend(codes[1:])
                return j
            if facts.delivery or any(v.on_violation == "block" for v in found):
                j.deny("suitability", codes[0], detail)
                j.codes.extend(codes[1:])
                return j
            text = content.safe_text(policy.content, found)
            for code in codes:
                j.modify("suitability", "rewrite", code, detail)
        fitted, changes = content.fit_to_channel(text, contact.channels[channel])
        if "reformat" in changes:
            j.modify("suitability", "reformat", "reformatted_for_channel")
        if "trim" in changes:
            j.modify("suitability", "trim", "trimmed_to_channel_limit",
                     f"{len(text)} > {contact.channels[channel].max_chars} characters")

        # priority
        if channel in state.used_channels:
            return j.deny(
                "priority", "duplicate_action", f"one message per channel per turn ({channel})"
            )
        state.used_channels.add(channel)
        state.ledger.append(SentRecord(channel, purpose, at, reply=is_reply))
        j.final = action.model_copy(update={"channel": channel, "text": fitted, "purpose": purpose})
        j.deliver_at = deliver_at
        if is_reply and state.escalating:
            j.codes.append("handoff_acknowledgement")
        return j

    def _channel_problem(
        self, profile: CustomerProfile, channel: Channel, purpose: Purpose, *, is_reply: bool
    ) -> tuple[str, str] | None:
        contact = self.policy.contact
        if not contact.channels[channel].available:
            return "channel_unavailable", f"{channel} is marked down"
        if profile.address_for(channel) is None:
            return "no_identity", f"no address for the customer on {channel}"
        code = consent_problem(
            profile, channel, purpose, contact.consent.purposes[purpose], is_reply=is_reply
        )
        if code == "consent_revoked":
            return code, f"the customer opted out of {purpose} on {channel}"
        if code:
            return code, f"no {purpose} consent on {channel}"
        return None

    def _switch(
        self, profile: CustomerProfile, purpose: Purpose, state: _TurnState, exclude: Channel
    ) -> Channel | None:
        order = _preference(profile) + [c for c in self.policy.contact.preference]
        order += [c for c in CHANNELS if c not in order]
        for channel in dict.fromkeys(order):
            if channel == exclude or channel in state.used_channels:
                continue
            if self._channel_problem(profile, channel, purpose, is_reply=False) is None:
                return channel
        return None

    # --- escalations, credits, CRM -------------------------------------------------------

    def _escalate(
        self,
        action: EscalateToHuman,
        facts: Facts,
        rule: Escalation | None,
        state: _TurnState,
    ) -> _Judgement:
        j = _Judgement(final=action)
        if facts.active_handoff is not None:
            return j.deny("eligibility", "already_escalated",
                          "the conversation already has an open handoff")
        if state.escalating:
            return j.deny("priority", "duplicate_action", "one escalation per turn")
        if rule is None and not self.policy.escalation.allow_model_escalation:
            return j.deny("eligibility", "no_escalation_rule", "no escalation rule matched")
        reason, summary = self._handoff_text(action, facts, rule, j)
        asked = PRIORITIES.index(action.priority)
        if rule is not None:
            # the rule decides the priority: a model may ask for less, never for more
            final = action.model_copy(update={
                "queue": rule.queue, "priority": rule.priority,
                "reason": _merge_reasons(rule.reason, reason)[:MAX_HANDOFF_TEXT],
                "summary": summary[:MAX_HANDOFF_TEXT],
            })
            j.codes.append(f"escalation_rule:{rule.rule}")
            if final.queue != action.queue or PRIORITIES.index(final.priority) > asked:
                j.modify("eligibility", "reroute", "rerouted_by_rule",
                         f"{action.queue}/{action.priority} → {final.queue}/{final.priority}")
        else:
            j.codes.append("model_escalation")
            cap = self.policy.escalation.max_model_priority
            final = action.model_copy(update={
                "priority": min(action.priority, cap, key=PRIORITIES.index),
                "reason": reason[:MAX_HANDOFF_TEXT], "summary": summary[:MAX_HANDOFF_TEXT],
            })
        if PRIORITIES.index(final.priority) < asked:
            j.modify("eligibility", "reroute", "priority_capped",
                     f"{action.priority} asked, {final.priority} given "
                     + (f"(escalation rule {rule.rule})" if rule else "(the policy's "
                        "max_model_priority)"))
        j.final = self._route(final, facts, j)
        state.escalating = True
        return j

    def _screen(self, text: str, facts: Facts) -> tuple[str, list[content.Violation]]:
        """Free text a WRITE tool stores (a CRM note, a handoff summary, a credit's reason):
        the text with card numbers masked, and the content rules it breaks otherwise. The
        customer's own words quoted in it are not the bot's claims."""
        masked = content.redact_cards(text)
        own = [i.value for i in facts.profile.identities if i.kind in ("email", "phone")]
        found = content.violations(content.unquoted(masked, facts.customer_said),
                                   self.policy.content, own)
        return masked, [v for v in found if v.code != "payment_card_number"]

    def _stored_text(
        self, text: str, argument: str, facts: Facts, j: _Judgement,
        mod: Modification = "drop_fields",
    ) -> str | None:
        """``text`` as it may be stored, card numbers masked; None when it breaks another
        content rule (recorded on the verdict as ``mod``)."""
        masked, found = self._screen(text, facts)
        if found:
            j.withheld(mod, argument, found)
            return None
        if masked != content.normalise(text):
            j.modify("suitability", "redact", "payment_card_number",
                     f"card numbers masked in {argument}")
        return masked

    def _free_text(
        self, text: str, argument: str, facts: Facts, j: _Judgement, fallback: str
    ) -> str:
        """``text`` as it may be stored, or ``fallback`` when it breaks a content rule."""
        kept = self._stored_text(text, argument, facts, j, "rewrite")
        return fallback if kept is None else kept

    def _handoff_text(
        self, action: EscalateToHuman, facts: Facts, rule: Escalation | None, j: _Judgement
    ) -> tuple[str, str]:
        """The handoff's reason and summary as a person will read them: what the model wrote,
        unless it breaks the content rules (then the rule's reason and the packet code built)."""
        fallback = rule.reason if rule else "escalated by the model (its reason was withheld)"
        reason = self._free_text(action.reason, "reason", facts, j, fallback)
        summary = action.summary
        if summary != facts.summary:  # the packet built by code is not the model's text
            summary = self._free_text(summary, "summary", facts, j,
                                      facts.summary or facts.message.text or fallback)
        return reason, summary

    def _route(self, action: EscalateToHuman, facts: Facts, j: _Judgement) -> EscalateToHuman:
        """The queue a handoff goes to: a known queue, then the first routing rule (by the
        message's intent, the customer's stage and value, the priority) that matches."""
        handoff = self.policy.handoff
        if action.queue not in handoff.queues:
            queue = auto_queue(facts.message, self.policy.escalation)
            j.modify("eligibility", "reroute", "unknown_queue",
                     f"no queue {action.queue!r}; {queue} instead")
            action = action.model_copy(update={"queue": queue})
        value = _number(facts.profile.attributes.get(handoff.value_attribute))
        intents = {facts.message.intent, facts.message.topic}
        for rule in handoff.routing:
            when = rule.when
            if (
                (when.queues and action.queue not in when.queues)
                or (when.intents and not intents & set(when.intents))
                or (when.stages and facts.profile.lifecycle_stage not in when.stages)
                or (when.min_value is not None and (value is None or value < when.min_value))
                or (when.priorities and action.priority not in when.priorities)
            ):
                continue
            priority = max(action.priority, rule.priority or action.priority,
                           key=PRIORITIES.index)
            j.codes.append(f"routed:{rule.name}")
            if (rule.queue, priority) != (action.queue, action.priority):
                j.modify("eligibility", "reroute", "rerouted_by_routing",
                         f"{action.queue}/{action.priority} → {rule.queue}/{priority}")
            return action.model_copy(update={"queue": rule.queue, "priority": priority})
        return action

    def _credit(self, action: IssueCredit, facts: Facts, state: _TurnState) -> _Judgement:
        j = _Judgement(final=action)
        limit = self.policy.content.max_credit
        if facts.active_handoff is not None and not facts.approved_by_person:
            return j.deny("eligibility", "handoff_active", "a human owns the conversation")
        if action.amount > limit:
            return j.deny("suitability", "credit_over_limit",
                          f"{action.amount:g} > the {limit:g} the bot may issue")
        if state.credited:
            return j.deny("priority", "duplicate_action", "one credit per turn")
        reason = self._free_text(action.reason, "reason", facts, j,
                                 "proposed by the model (its reason was withheld)")
        if reason != action.reason:
            j.final = action.model_copy(update={"reason": reason[:500]})
        state.credited = True
        return j

    def _crm(self, action: UpdateCrm, facts: Facts, state: _TurnState) -> _Judgement:
        crm = self.policy.crm
        j = _Judgement(final=action)
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
        final = self._crm_text(action, facts, j)
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

    def _crm_text(self, action: UpdateCrm, facts: Facts, j: _Judgement) -> UpdateCrm:
        """The note, task and text fields as they may be stored: one that breaks the content
        rules is dropped, card numbers are masked."""
        update: dict[str, Any] = {}
        for name in ("note", "task"):
            value = getattr(action, name)
            if value:
                kept = self._stored_text(value, name, facts, j)
                if kept != value:
                    update[name] = kept
        fields: dict[str, Any] = {}
        for key, value in action.fields.items():
            if isinstance(value, str):
                kept = self._stored_text(value, f"fields.{key}", facts, j)
                if kept is not None:
                    fields[key] = kept
            elif isinstance(value, list):
                items = [self._stored_text(v, f"fields.{key}", facts, j) for v in value]
                if None not in items:
                    fields[key] = items
            else:
                fields[key] = value
        if fields != action.fields:
            update["fields"] = fields
        return action.model_copy(update=update) if update else action

    # --- approval ---------------------------------------------------------------------------

    def _approval(self, j: _Judgement, state: _TurnState) -> None:
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
        }


@dataclass
class _TurnState:
    ledger: list[SentRecord]
    escalating: bool = False
    used_channels: set[Channel] = field(default_factory=set)
    crm_done: bool = False
    credited: bool = False
    held: bool = False
    confirmed_opt_out: bool = False


def ledger_horizon(policy: Policy) -> timedelta:
    """How far back the caps look: the longest rolling window, and at least two days."""
    windows = [c.window for c in policy.contact.caps if c.window is not None]
    return max([timedelta(days=2), *windows])


def _default_tz(policy: Policy) -> str:
    quiet = policy.contact.quiet_hours
    return quiet.default_timezone if quiet is not None else "UTC"


def _preference(profile: CustomerProfile) -> list[Channel]:
    raw = profile.attributes.get("channel_preference")
    values = raw if isinstance(raw, list) else [raw] if isinstance(raw, str) else []
    return [c for c in values if c in CHANNELS]

