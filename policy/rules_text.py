"""The content rules on free text a WRITE tool stores (a CRM note or field, a handoff's reason
and summary, a credit's reason): card numbers masked, text that breaks another rule withheld."""

from __future__ import annotations

from core.domain import Modification
from policy import content
from policy.facts import Facts, Judgement
from policy.model import Policy


def screen(policy: Policy, text: str, facts: Facts) -> tuple[str, list[content.Violation]]:
    """Free text a WRITE tool stores (a CRM note, a handoff summary, a credit's reason):
    the text with card numbers masked, and the content rules it breaks otherwise. The
    customer's own words quoted in it are not the bot's claims."""
    masked = content.redact_cards(text)
    own = [i.value for i in facts.profile.identities if i.kind in ("email", "phone")]
    found = content.violations(content.unquoted(masked, facts.customer_said),
                               policy.content, own)
    return masked, [v for v in found if v.code != "payment_card_number"]


def stored_text(
    policy: Policy, text: str, argument: str, facts: Facts, j: Judgement,
    mod: Modification = "drop_fields",
) -> str | None:
    """``text`` as it may be stored, card numbers masked; None when it breaks another
    content rule (recorded on the verdict as ``mod``)."""
    masked, found = screen(policy, text, facts)
    if found:
        j.withheld(mod, argument, found)
        return None
    if masked != content.normalise(text):
        j.modify("suitability", "redact", "payment_card_number",
                 f"card numbers masked in {argument}")
    return masked


def free_text(
    policy: Policy, text: str, argument: str, facts: Facts, j: Judgement, fallback: str
) -> str:
    """``text`` as it may be stored, or ``fallback`` when it breaks a content rule."""
    kept = stored_text(policy, text, argument, facts, j, "rewrite")
    return fallback if kept is None else kept
