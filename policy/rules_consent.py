"""Consent and channel eligibility: the opt-out and opt-in words of an inbound message, whether
a channel may carry a purpose to this customer, and the channel a proactive message switches to.
"""

from __future__ import annotations

from core.domain import CHANNELS, Channel, CustomerProfile, Purpose
from policy import content
from policy.contact import consent_problem
from policy.escalation import MessageFacts, terms_pattern
from policy.facts import TurnState
from policy.model import Policy, keyword_form


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


def channel_problem(
    policy: Policy, profile: CustomerProfile, channel: Channel, purpose: Purpose, *,
    is_reply: bool,
) -> tuple[str, str] | None:
    """Why ``channel`` may not carry a ``purpose`` message to this customer (reason code,
    detail), or None."""
    contact = policy.contact
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


def switch_channel(
    policy: Policy, profile: CustomerProfile, purpose: Purpose, state: TurnState,
    exclude: Channel,
) -> Channel | None:
    """The first channel (the customer's preference, the policy's, then any) not used this
    turn that may carry the message, or None."""
    order = preference(profile) + [c for c in policy.contact.preference]
    order += [c for c in CHANNELS if c not in order]
    for channel in dict.fromkeys(order):
        if channel == exclude or channel in state.used_channels:
            continue
        if channel_problem(policy, profile, channel, purpose, is_reply=False) is None:
            return channel
    return None


def preference(profile: CustomerProfile) -> list[Channel]:
    """The customer's own ``channel_preference`` attribute (one channel or a list)."""
    raw = profile.attributes.get("channel_preference")
    values = raw if isinstance(raw, list) else [raw] if isinstance(raw, str) else []
    return [c for c in values if c in CHANNELS]
