"""``journey policy explain``: the effective policy as tables a CX lead can read."""

from __future__ import annotations

from rich.table import Table

from policy.model import Policy, fmt_duration


def _table(*columns: str) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def explain(policy: Policy) -> list[tuple[str, Table]]:
    contact = policy.contact
    out: list[tuple[str, Table]] = []

    consent = _table("purpose", "needs")
    words = {
        "explicit": "the customer granted it on that channel",
        "implied": "allowed unless the customer revoked it",
        "reply": "implied on the channel the customer wrote on, explicit elsewhere",
    }
    for purpose, needs in contact.consent.purposes.items():
        consent.add_row(purpose, f"{needs}: {words[needs]}")
    consent.add_row("opt-out words", ", ".join(contact.consent.opt_out_keywords))
    consent.add_row("opt-in words", ", ".join(contact.consent.opt_in_keywords))
    out.append(("Consent", consent))

    caps = _table("cap", "at most", "purposes", "channels", "per")
    for cap in contact.caps:
        per = "calendar day (customer's timezone)" if cap.per else (
            f"rolling {fmt_duration(cap.window)}"
        )
        caps.add_row(cap.name, str(cap.max), ", ".join(cap.purposes),
                     ", ".join(cap.channels) or "all together", per)
    out.append(("Frequency caps (transactional exempt; replies not counted)", caps))

    quiet = _table("from", "to", "purposes", "unknown timezone")
    if contact.quiet_hours:
        q = contact.quiet_hours
        quiet.add_row(f"{q.start:%H:%M}", f"{q.end:%H:%M}", ", ".join(q.purposes),
                      q.default_timezone)
    out.append(("Quiet hours (customer's local time; deferred, not dropped)", quiet))

    channels = _table("channel", "available", "max chars", "markdown")
    for name, spec in contact.channels.items():
        channels.add_row(name, "yes" if spec.available else "DOWN", str(spec.max_chars),
                         "yes" if spec.markdown else "plain text")
    out.append((
        "Channels (switch order: " + " → ".join(contact.preference)
        + ("" if contact.switch_channels else "; switching off") + ")",
        channels,
    ))

    rules = _table("rule", "when", "queue", "priority", "reason")
    for rule in policy.escalation.rules:
        when = "; ".join(
            f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in rule.when.model_dump(exclude_defaults=True).items()
        )
        rules.add_row(rule.name, when, rule.queue, rule.priority, rule.reason)
    out.append(("Escalation rules (first match wins)", rules))

    content = _table("rule", "limit")
    content.add_row("max discount", f"{policy.content.max_discount_percent:g}%")
    content.add_row("max credit", f"{policy.content.max_credit:g}")
    for claim in policy.content.forbidden:
        content.add_row(f"forbidden: {claim.name}", f"/{claim.pattern}/ → {claim.on_violation}")
    content.add_row("others' personal data", "rewritten (reply) / blocked (proactive)")
    out.append(("Content rules", content))

    approvals = _table("tool", "when")
    for a in policy.approvals:
        cond = a.model_dump(exclude_defaults=True, exclude={"tool"})
        approvals.add_row(a.tool, ", ".join(f"{k}={v}" for k, v in cond.items()) or "always")
    out.append(("Needs a person's approval", approvals))

    crm = _table("bot may write", "never")
    crm.add_row(", ".join(policy.crm.writable_fields), ", ".join(policy.crm.protected_fields))
    out.append(("CRM fields", crm))
    return out
