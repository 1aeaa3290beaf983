"""The policy in brief, for the model's prompt. The prompt may explain a policy; only the
engine decides it."""

from __future__ import annotations

from policy.model import Policy

_BRIEFS: dict[str, str] = {}


def policy_brief(policy: Policy) -> str:
    """Rendered once per policy version."""
    if policy.version not in _BRIEFS:
        _BRIEFS[policy.version] = _render(policy)
    return _BRIEFS[policy.version]


def _render(policy: Policy) -> str:
    content = policy.content
    lines = [
        f"- Never offer a discount above {content.max_discount_percent:g}% or a credit or "
        f"refund above {content.max_credit:g}; only offers in the facts below.",
    ]
    if any(rule.tool == "issue_credit" for rule in policy.approvals):
        lines.append(
            "- issue_credit is reviewed by a person before it is applied: say a colleague will "
            "confirm it, never that it is done."
        )
    if content.forbidden:
        names = ", ".join(rule.name.replace("_", " ") for rule in content.forbidden)
        lines.append(f"- Never make these claims: {names}.")
    quiet = policy.contact.quiet_hours
    if quiet is not None:
        lines.append(
            f"- Marketing is never sent between {quiet.start:%H:%M} and {quiet.end:%H:%M} "
            "customer time; the engine defers it."
        )
    return "\n".join(lines)
