"""The verdict on one message (``send_message``), step by step: eligibility (opt-out, an open
handoff, purpose, channel and consent, switching), applicability (quiet hours, frequency caps),
suitability (a person's earlier words, the content rules, grounding, the channel's format and
length) and priority (one message per channel per turn)."""

from __future__ import annotations

from typing import Any

from core.domain import CustomerProfile, Purpose, SendMessage
from policy import content, grounding
from policy.contact import SentRecord, cap_exceeded, next_allowed
from policy.facts import Facts, Judgement, TurnState
from policy.model import Policy, fmt_duration
from policy.rules_consent import channel_problem, switch_channel


def judge_message(
    policy: Policy,
    action: SendMessage,
    facts: Facts,
    profile: CustomerProfile,
    zone: Any,
    state: TurnState,
    *,
    opt_out: bool,
    already_out: bool,
    added: bool,
) -> Judgement:
    """The verdict on one message. ``profile`` is the customer with consent as it stands after
    this turn's opt-in; ``added``: the engine wrote the message itself, so the content rules
    do not rewrite or block it."""
    contact = policy.contact
    j = Judgement(final=action)
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
    # a person owns the conversation, so the bot is silent; the system's transactional
    # messages (an order update, a password reset) are not the conversation and still go out
    account_notice = facts.origin == "system" and action.purpose == "transactional"
    if facts.active_handoff is not None and not facts.approved_by_person \
            and not account_notice:
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
    problem = channel_problem(policy, profile, channel, purpose, is_reply=is_reply)
    if problem is not None:
        code, detail = problem
        alternative = None
        if not is_reply and contact.switch_channels and not facts.delivery:
            alternative = switch_channel(policy, profile, purpose, state, exclude=channel)
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
    g = facts.grounding
    if (g is not None and policy.content.grounding and not added and not facts.delivery
            and not facts.approved_by_person):
        missing = grounding.unsupported(text, g.sources, g.region,
                                        policy.content.allowed_contacts)
        if missing:
            detail = "not in the turn's sources: " + ", ".join(str(c) for c in missing)
            if not is_reply:
                return j.deny("suitability", "ungrounded_claim", detail)
            # the retrieved answer if it is itself grounded, else the safe template
            fallback = g.fallback if g.fallback and not grounding.unsupported(
                g.fallback, g.sources, g.region, policy.content.allowed_contacts) else None
            templates = policy.content.templates
            text = fallback or templates.get("ungrounded_claim", templates["default"])
            j.modify("suitability", "rewrite", "ungrounded_claim", detail)
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
