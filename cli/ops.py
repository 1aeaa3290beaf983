"""Operate: the outbox (list, replay dead letters) and the human inbox (handoffs, metrics)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from cli.app import app, console
from core.settings import get_settings

outbox_app = typer.Typer(
    help="The outbox: what is queued, sent, dead-lettered; replay the dead letters.",
    no_args_is_help=True,
)
app.add_typer(outbox_app, name="outbox")


def _store() -> Any:
    from memory import migrate
    from memory.db import make_engine
    from memory.store import Store

    engine = make_engine(get_settings().resolved_database_url)
    migrate.upgrade(engine)
    return Store(engine)


@outbox_app.command("list")
def outbox_list(
    status: Annotated[str | None, typer.Option(
        help="pending, scheduled, sending, sent, dead or cancelled.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """Counts by status, then the rows (newest last) with their last error."""
    store = _store()
    queue = store.outbox_queue
    console.print(f"outbox: {queue.counts()}", highlight=False)
    table = Table("id", "channel", "status", "attempts", "due", "last error")
    for row in queue.list(status=status, limit=limit):
        due = row.next_attempt_at.isoformat(timespec="seconds") if row.next_attempt_at else ""
        table.add_row(row.id, row.channel, row.status, str(row.attempts), due,
                      (row.last_error or "")[:60])
    console.print(table)


@outbox_app.command("replay")
def outbox_replay(
    ids: Annotated[list[str] | None, typer.Argument(help="Dead rows to replay (all if none).")]
    = None,
) -> None:
    """Put dead-lettered messages back in the queue, due now with fresh attempts. A running
    worker delivers them; their idempotency keys stop a provider from sending one twice."""
    store = _store()
    replayed = store.outbox_queue.replay(list(ids or []) or None)
    console.print(f"replayed {replayed} dead-lettered message(s)")


handoffs_app = typer.Typer(
    help="The human inbox from the command line: handoffs with their SLA timers, and the "
    "handoff metrics. Agents work the inbox in the web console (/console) or the API.",
    no_args_is_help=True,
)
app.add_typer(handoffs_app, name="handoffs")


def _handoffs() -> Any:
    from journey.handoffs import HandoffService
    from policy.lifecycle import load_lifecycle
    from policy.loader import PolicyProvider

    return HandoffService(_store(), PolicyProvider(get_settings().policy_path),
                          load_lifecycle().stages)


@handoffs_app.command("list")
def handoffs_list(
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    status: Annotated[str, typer.Option(
        help="open, claimed, resolved, returned, active (open or claimed) or closed.")]
    = "active",
    limit: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """Handoffs, newest first: queue, priority, status, who holds it, the SLA badge."""
    from journey.handoffs import STATUSES, Agent

    if status not in STATUSES:
        raise typer.BadParameter(f"status must be one of {', '.join(STATUSES)}")
    colours = {"ok": "green", "due_soon": "yellow", "breached": "red", "met": "green",
               "missed": "red"}
    table = Table("id", "customer", "queue", "priority", "status", "assignee", "channel",
                  "SLA", "unread")
    for h in _handoffs().list(Agent(name="cli"), queue=queue, status=status, limit=limit):
        sla = h.claim_sla if h.status == "open" else h.resolve_sla
        table.add_row(h.id, h.customer_name or h.customer_id, h.queue, h.priority, h.status,
                      h.assignee or "", h.channel or "",
                      f"[{colours[sla.state]}]{sla.label}[/]", str(h.unread or ""))
    console.print(table)


@handoffs_app.command("metrics")
def handoffs_metrics(
    days: Annotated[int, typer.Option(min=1, help="Handoffs created in the last N days.")] = 30,
) -> None:
    """Per queue: time to claim and resolve (p50/p90), SLAs, resolved vs returned to the bot."""
    from datetime import UTC, datetime, timedelta

    from journey.handoffs import human_duration

    def took(median: float | None, p90: float | None) -> str:
        if median is None or p90 is None:
            return "-"
        return f"{human_duration(median)} / {human_duration(p90)}"

    metrics = _handoffs().metrics(since=datetime.now(UTC) - timedelta(days=days))
    table = Table("queue", "handoffs", "resolved / returned", "claim p50 / p90",
                  "resolve p50 / p90", "claim SLA met", "breached")
    for m in [*metrics.queues, metrics.total]:
        claims = m.claim_sla_met + m.claim_sla_missed
        table.add_row(
            m.queue, f"{m.created} ({m.open + m.claimed} active)",
            f"{m.resolved_by_human} / {m.returned_to_bot}",
            took(m.time_to_claim.median_s, m.time_to_claim.p90_s),
            took(m.time_to_resolve.median_s, m.time_to_resolve.p90_s),
            f"{m.claim_sla_met}/{claims}" if claims else "-", str(m.breached_now),
        )
    console.print(table)
    if metrics.total.outcomes:
        console.print("outcomes: " + ", ".join(
            f"{k} {v}" for k, v in sorted(metrics.total.outcomes.items())), highlight=False)
