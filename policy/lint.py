"""``journey policy check``: beyond validation, what a valid policy may still get wrong."""

from __future__ import annotations

from policy.content import violations
from policy.model import Policy


def lint(policy: Policy, intents: list[str], stages: list[str]) -> list[str]:
    """Warnings: rules that can never match, templates the content rules would block."""
    warnings: list[str] = []
    known = set(intents)
    for rule in policy.escalation.rules:
        unknown = sorted(set(rule.when.intents) - known)
        if unknown:
            warnings.append(f"escalation rule {rule.name!r}: unknown intents {unknown}")
        bad_stages = sorted(set(rule.when.stages) - set(stages))
        if bad_stages:
            warnings.append(f"escalation rule {rule.name!r}: unknown stages {bad_stages}")
    unknown_topics = sorted(set(policy.escalation.sales_topics) - known)
    if unknown_topics:
        warnings.append(f"escalation.sales_topics: unknown intents {unknown_topics}")
    texts = {f"content.templates.{k}": v for k, v in policy.content.templates.items()}
    texts |= {f"escalation.acknowledgement.{k}": v
              for k, v in policy.escalation.acknowledgement.items()}
    texts["contact.consent.opt_out_confirmation"] = policy.contact.consent.opt_out_confirmation
    for where, text in texts.items():
        for v in violations(text, policy.content, []):
            warnings.append(f"{where} breaks its own content rule {v.code}: {v.detail}")
    for channel, spec in policy.contact.channels.items():
        for where, text in texts.items():
            if len(text) > spec.max_chars:
                warnings.append(f"{where} is longer than {channel}'s {spec.max_chars} chars")
    if all(not spec.available for spec in policy.contact.channels.values()):
        warnings.append("every channel is marked unavailable: nothing can be sent")
    return warnings
