"""Journeys from the command line: list them, see what one did, preview one before launch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.app import app, console, err, refuse_file
from core.settings import get_settings

if TYPE_CHECKING:
    from journey.journey_metrics import Experiment, JourneyMetrics
    from journey.preview import PreviewResult

journeys_app = typer.Typer(
    help="The journeys in force (prompts/journeys.yaml or JOURNEY_JOURNEYS_PATH): list them, "
    "see what a journey with steps did (funnel, conversions against the holdout, variants), "
    "and preview a journey over real or synthetic customers before launch, sending nothing.",
    no_args_is_help=True,
    # a docstring's line breaks are not kept in --help (paragraphs are)
    rich_markup_mode="markdown",
)
app.add_typer(journeys_app, name="journeys")

FileOption = Annotated[Path | None, typer.Option(
    "--file", help="A journeys YAML (default: JOURNEY_JOURNEYS_PATH, else the shipped one).")]


def _load(file: Path | None) -> Any:
    from policy.journeys import JourneysError, load_journeys

    try:
        return load_journeys(file or get_settings().journeys_path)
    except JourneysError as exc:
        refuse_file(exc)


@journeys_app.command("list")
def journeys_list(file: FileOption = None) -> None:
    """Every journey: its trigger, its steps (or one-step actions), goal and holdout."""
    from rich.table import Table

    journeys = _load(file)
    table = Table("name", "trigger", "steps", "goal", "holdout", "enabled")
    for j in journeys.journeys:
        steps = " → ".join(s.id for s in j.steps) if j.steps else "one step: " + ", ".join(
            k for k in ("send", "escalate", "crm") if getattr(j.actions, k) is not None)
        table.add_row(j.name, j.trigger.event, steps,
                      f"{j.goal.event} in {j.goal.within.days}d" if j.goal else "—",
                      f"{j.holdout.share:.0%}" if j.holdout else "—",
                      "yes" if j.enabled else "no")
    console.print(table)


@journeys_app.command("metrics")
def journeys_metrics(
    name: Annotated[str, typer.Argument(help="The journey's name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON "
                                          "(what GET /v1/journeys/NAME/metrics returns).")] = False,
) -> None:
    """What a journey with steps did: funnel, conversions, lift over the holdout, variants.

    From the database: entered by arm, the funnel, each step's outcomes, exits, messages sent
    and suppressed by reason, conversions with 95% intervals, the lift over the holdout (said
    "not yet significant" until its interval leaves zero) and each split's variants."""
    from journey.journey_metrics import journey_metrics, metrics_journey
    from memory.db import make_engine
    from memory.store import Store

    settings = get_settings()
    journeys = _load(None)
    engine = make_engine(settings.resolved_database_url)
    try:
        store = Store(engine)
        journey = metrics_journey(store, journeys.get(name), name)
        if journey is None:
            err.print(f"[red]No journey with steps named {name!r}[/red] (journeys with steps: "
                      f"{', '.join(j.name for j in journeys.journeys if j.steps) or 'none'})")
            raise typer.Exit(1)
        metrics = journey_metrics(store, journey, store.clock.now())
    finally:
        engine.dispose()
    if as_json:
        print(metrics.model_dump_json(indent=2))
        return
    _print_metrics(metrics)


def _bar(part: int, whole: int, width: int = 30) -> str:
    filled = round(width * part / whole) if whole else 0
    return "█" * filled + "·" * (width - filled)


def _print_metrics(m: JourneyMetrics) -> None:
    from rich.table import Table

    console.print(f"[bold]{m.journey}[/bold]  {m.description}", highlight=False)
    console.print(f"entered {m.entered} (treatment {m.by_arm['treatment']}, holdout "
                  f"{m.by_arm['holdout']}) · active {m.active} (waiting {m.waiting}) · "
                  f"goal: {m.goal or '—'} · versions: {', '.join(m.versions)}", highlight=False)
    funnel = Table("funnel", "customers", "", box=None)
    top = m.funnel[0]["customers"] if m.funnel else 0
    for f in m.funnel:
        funnel.add_row(str(f["step"]), str(f["customers"]), _bar(f["customers"], top))
    console.print(funnel)
    steps = Table("step", "kind", "reached", "now on it", "outcomes", "suppressed by", "paths")
    for s in m.steps:
        steps.add_row(s.id, s.kind, str(s.reached), str(s.current),
                      ", ".join(f"{k} {n}" for k, n in s.outcomes.items()),
                      ", ".join(f"{k} {n}" for k, n in s.suppressed_by.items()),
                      ", ".join(f"{k} {n}" for k, n in s.paths.items()))
    console.print(steps)
    console.print(f"messages sent {m.messages_sent}, suppressed {m.messages_suppressed}"
                  + (" (" + ", ".join(f"{k} {n}" for k, n in m.suppressed_by.items()) + ")"
                     if m.suppressed_by else ""), highlight=False)
    console.print("exits: " + (", ".join(f"{k} {n}" for k, n in m.exited.items()) or "none"),
                  highlight=False)
    ttc = m.time_to_convert_hours
    console.print(f"conversions {m.conversions}; time to convert: median "
                  f"{ttc['median'] if ttc['median'] is not None else '—'} h, p90 "
                  f"{ttc['p90'] if ttc['p90'] is not None else '—'} h", highlight=False)
    if m.holdout is not None:
        _print_experiment("treatment against the holdout", m.holdout)
    for step, experiment in m.variants.items():
        _print_experiment(f"split {step}", experiment)


def _print_experiment(title: str, e: Experiment) -> None:
    from rich.table import Table

    table = Table("arm", "customers", "converted", "rate (95% interval)", "lift over holdout",
                  title=title, title_justify="left")
    for arm in [*e.arms, *([e.holdout] if e.holdout else [])]:
        rate = "—" if arm.rate is None else (
            f"{arm.rate:.1%} ({arm.interval.low:.1%} to {arm.interval.high:.1%})")
        lift = "—"
        if arm.lift is not None and arm.lift_interval is not None:
            lift = (f"{arm.lift * 100:+.1f} points ({arm.lift_interval.low * 100:+.1f} to "
                    f"{arm.lift_interval.high * 100:+.1f}), "
                    f"{'significant' if arm.lift_significant else 'not yet significant'}")
        table.add_row(arm.name, str(arm.customers), str(arm.conversions), rate, lift)
    console.print(table)
    console.print(f"  {e.summary}", highlight=False)


@journeys_app.command("preview")
def journeys_preview(
    name: Annotated[str, typer.Argument(help="The journey's name.")],
    file: FileOption = None,
    synthetic: Annotated[int, typer.Option(
        min=0, max=100_000, help="Preview over N made-up customers (seeded mix of timezones, "
        "stages, consent, intent scores) instead of the database's.")] = 0,
    customers: Annotated[int, typer.Option(
        min=1, max=100_000, help="How many of the database's customers (in the order of "
        "their ids).")
    ] = 200,
    days: Annotated[int | None, typer.Option(
        min=1, max=365, help="How far ahead to simulate (default: the goal's window, else "
        "30 days).")] = None,
    start: Annotated[datetime | None, typer.Option(
        help="When the trigger fires for everyone (UTC; default: now).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic population.")] = 7,
    html: Annotated[Path | None, typer.Option(
        help="Also write the report as a stand-alone HTML page here.")] = None,
    show: Annotated[int, typer.Option(
        min=0, help="Customers whose timeline is printed (all are in the HTML).")] = 10,
) -> None:
    """Preview a journey before launch, over real or synthetic customers, sending nothing.

    The journey runs as if its trigger fired now for each customer, in simulated time, with
    the real stepper and policy gate on a throwaway copy of the data: what each customer would
    get, when, on which channel, and what the policy would suppress and why, as a table (and
    an HTML report with --html). Edit a draft with --file and preview it before it goes
    live. The customers' past messages are not copied: frequency caps count only what the
    preview itself would send."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from core.domain import Event
    from journey.preview import existing_profiles, preview, synthetic_population

    settings = get_settings()
    _load(file)  # an invalid file is refused with its lines before anything starts
    when = (start.replace(tzinfo=UTC) if start and start.tzinfo is None else start) or \
        datetime.now(UTC)
    events: dict[str, list[Event]] = {}
    if synthetic:
        profiles = synthetic_population(synthetic, seed, when)
        source = f"synthetic, seed {seed}"
    else:
        profiles, events = existing_profiles(settings, customers)
        source = f"the database's first {len(profiles)}"
        if not profiles:
            err.print("[red]The database has no customers.[/red] Use --synthetic N, or "
                      "`journey seed-demo` / `journey customers import` first.")
            raise typer.Exit(1)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=err, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        try:
            result = preview(settings, name, profiles, events=events, journeys_file=file,
                             start=when, horizon=timedelta(days=days) if days else None,
                             source=source, progress=progress)
        except LookupError as exc:
            err.print(f"[red]{exc.args[0]}[/red]")
            raise typer.Exit(1) from None
    _print_preview(result, show)
    if html is not None:
        from api.reports import preview_html

        html.write_text(preview_html(result), encoding="utf-8")
        console.print(f"[green]✓[/green] report written to {html}", highlight=False)


def _print_preview(r: PreviewResult, show: int) -> None:
    from rich.table import Table

    console.print(f"[bold]Preview of {r.journey}[/bold] (version {r.version}) over {r.customers}"
                  f" customers ({r.source}), {r.started:%Y-%m-%d %H:%M} to "
                  f"{r.horizon:%Y-%m-%d %H:%M} UTC; nothing was sent.", highlight=False)
    would = r.count("would_send") + r.count("deferred")
    console.print(f"treatment {r.by_arm['treatment']}, holdout {r.by_arm['holdout']} · "
                  f"{would} messages would go out ({r.count('deferred')} deferred by quiet "
                  f"hours) · {r.count('suppressed')} suppressed · "
                  f"{r.count('would_escalate')} handoffs"
                  + (f" · {r.count('cancelled')} cancelled as stale when due"
                     if r.count("cancelled") else ""), highlight=False)
    if r.by_channel:
        console.print("by channel: " + ", ".join(f"{c} {n}" for c, n in r.by_channel.items()),
                      highlight=False)
    if r.suppressed_by:
        table = Table("the policy would suppress", "messages", title_justify="left")
        for code, n in r.suppressed_by.items():
            table.add_row(code, str(n))
        console.print(table)
    if r.exits:
        console.print("at the horizon: " + ", ".join(f"{k} {n}" for k, n in r.exits.items()),
                      highlight=False)
    timeline = Table("customer", "when (UTC)", "step", "what", "channel / queue", "why")
    shown: list[str] = []
    for row in r.rows:
        if row.customer_id not in shown:
            if len(shown) >= show:
                continue
            shown.append(row.customer_id)
        when = f"{row.at:%m-%d %H:%M}" + (f" → {row.deliver_at:%m-%d %H:%M}"
                                          if row.deliver_at else "")
        what = row.outcome.replace("_", " ") + (
            f": {row.detail}" if row.detail and row.outcome in ("branch", "variant", "exited",
                                                                "cancelled") else "")
        timeline.add_row(f"{row.name} ({row.arm})", when, row.step, what, row.target,
                         ", ".join(row.reasons))
    if show:
        console.print(timeline)
