"""``journey eval``: run suites, gate on thresholds, write reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from prompts import read_yaml

if TYPE_CHECKING:
    from evals.runner import CaseRun
    from evals.schema import Suite
    from evals.scorers import CaseScore

THRESHOLDS = Path(__file__).with_name("thresholds.yaml")
app = typer.Typer(
    help="Eval suites on conversation transcripts: run them against the agent, score them, "
    "gate on thresholds (exit code 1 when missed), write HTML (charts), JSON and Markdown "
    "reports; export and replay stored conversations; compare two reports.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)


def thresholds_for(brain: str, path: Path = THRESHOLDS) -> dict[str, float]:
    data: dict[str, Any] = read_yaml(path) or {}
    return {**data.get("default", {}), **data.get(brain, {})}


def gate(report: dict[str, Any], limits: dict[str, float]) -> list[str]:
    """The thresholds the report misses, in words."""
    missed = []
    totals, metrics = report["totals"], report["metrics"]
    for key, limit in limits.items():
        if key == "policy_violations":
            if totals["policy_violations"] > limit:
                missed.append(f"policy violations {totals['policy_violations']} > {limit:g}")
            continue
        value = totals.get(key, metrics.get(key))
        if value is not None and value < limit:
            missed.append(f"{key.replace('_', ' ')} {value:.3f} < {limit:g}")
    return missed


@app.command("run")
def run(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Suite files or folders (default: evals/suites).")
    ] = None,
    brain: Annotated[
        str, typer.Option(help="rules (offline), local (the embedded LLM), openai (JOURNEY_LLM_*).")
    ] = "rules",
    repeat: Annotated[int, typer.Option(min=1, help="Run each case K times; pass^k.")] = 1,
    tag: Annotated[list[str] | None, typer.Option(help="Only cases with this tag.")] = None,
    case: Annotated[list[str] | None, typer.Option(help="Only these case ids.")] = None,
    fail_under: Annotated[
        float | None, typer.Option(min=0, max=1, help="Minimum pass rate (overrides the file).")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Write report.html (charts), report.json and report.md here."),
    ] = None,
    judge: Annotated[
        bool,
        typer.Option(help="Grade each case's rubric lines with an LLM judge "
                          "(JOURNEY_LLM_BASE_URL / _API_KEY / _MODEL)."),
    ] = False,
) -> None:
    """Run eval cases and gate on the thresholds in evals/thresholds.yaml."""
    from evals.html import html_report
    from evals.report import build_report, markdown
    from evals.runner import SUITES_DIR, SuiteError, load_suites
    if brain not in ("rules", "openai", "local"):
        err.print(f"[red]unknown brain {brain!r}: use rules, local or openai[/red]")
        raise typer.Exit(2)
    try:
        suites = load_suites(paths or [SUITES_DIR])
        limits = thresholds_for(brain)  # before the run: a broken file is refused at once
    except (SuiteError, FileNotFoundError, yaml.YAMLError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    selected = [
        (s, c) for s in suites for c in s.cases
        if (not tag or set(tag) & set(c.tags + s.tags)) and (not case or c.id in case)
    ]
    if not selected:
        err.print("[red]no case matches the filters[/red]")
        raise typer.Exit(2)
    runs, scores = execute(selected, brain=brain, repeat=repeat, judge=_judge() if judge else None)
    result = build_report(runs, scores, brain=brain, suites=[s.name for s in suites])
    if fail_under is not None:
        limits["pass_rate"] = fail_under
    missed = gate(result, limits)
    result["gate"] = {"thresholds": limits, "missed": missed, "passed": not missed}
    show(result)
    if report:
        report.mkdir(parents=True, exist_ok=True)
        (report / "report.json").write_text(json.dumps(result, indent=2, default=str))
        (report / "report.md").write_text(markdown(result))
        (report / "report.html").write_text(html_report(result))
        console.print(f"Reports: {report / 'report.html'} (charts), report.json, report.md")
    if missed:
        err.print("[red]eval gate failed:[/red] " + "; ".join(missed))
        raise typer.Exit(1)
    console.print("[green]eval gate passed[/green]")


def _judge() -> Any:
    from agent.brains.llm import make_client
    from core.settings import get_settings
    from evals.judge import Judge

    s = get_settings()
    if not (s.llm_base_url or s.llm_api_key.get_secret_value()):
        err.print("[red]--judge needs JOURNEY_LLM_BASE_URL or JOURNEY_LLM_API_KEY[/red]")
        raise typer.Exit(2)
    client = make_client(s.llm_base_url, s.llm_api_key.get_secret_value(), s.llm_timeout_s)
    return Judge(client, s.llm_model)


def execute(
    selected: list[tuple[Suite, Any]], *, brain: str, repeat: int, judge: Any = None, **kw: Any
) -> tuple[list[list[CaseRun]], list[list[CaseScore]]]:
    from evals.runner import EvalEnv, run_case
    from evals.scorers import score_case

    with console.status("Loading the embedding model…"):
        env = EvalEnv.load()
    server = None
    if brain == "local":
        # one model server for the whole run; every case's container reuses it
        from core.settings import get_settings
        from journey.localllm import LocalModelError, start_local

        with console.status("Starting the local model…"):
            try:
                server = start_local(get_settings())
            except LocalModelError as exc:
                err.print(f"[red]{exc}[/red]")
                raise typer.Exit(2) from None
        kw["llm"] = {"local_port": server.port, "local_model_path": server.model}
    runs: list[list[CaseRun]] = []
    scores: list[list[CaseScore]] = []
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("cases", total=len(selected) * repeat)
            for suite, c in selected:
                c = c.model_copy(update={"tags": sorted(set(c.tags) | set(suite.tags))})
                repeats = []
                for _ in range(repeat):
                    repeats.append(run_case(c, env, suite=suite.name, brain=brain, **kw))  # type: ignore[arg-type]
                    progress.advance(task)
                runs.append(repeats)
                scored = [score_case(r) for r in repeats]
                if judge is not None:
                    for run_, score in zip(repeats, scored, strict=True):
                        if not run_.error:
                            score.checks += judge.grade(run_)
                scores.append(scored)
    finally:
        if server is not None:
            server.stop()
    return runs, scores


def show(result: dict[str, Any]) -> None:
    t, m = result["totals"], result["metrics"]
    table = Table(title=f"{t['passed']}/{t['cases']} cases passed ({t['pass_rate']:.1%}), "
                        f"{t['policy_violations']} policy violations, brain {result['brain']}")
    for col in ("tag", "cases", "passed", "pass rate"):
        table.add_column(col)
    for tag, row in result["by_tag"].items():
        colour = "green" if row["passed"] == row["cases"] else "red"
        table.add_row(tag, str(row["cases"]), str(row["passed"]),
                      f"[{colour}]{row['pass_rate']:.0%}[/{colour}]")
    console.print(table)
    console.print(
        f"intent accuracy {m['intent_accuracy']}  stage accuracy {m['stage_accuracy']}  "
        f"handoff precision {m['handoff_precision']} recall {m['handoff_recall']}  "
        f"latency p50 {m['latency_p50_ms']} ms p95 {m['latency_p95_ms']} ms"
    )
    for c in result["cases"]:
        if not c["passed"]:
            console.print(f"[red]✗ {c['id']}[/red] ({c['suite']})")
            for failure in dict.fromkeys(c["failures"]):
                console.print(f"    {failure}")


@app.command("schema")
def schema() -> None:
    """Print the JSON schema of a suite file (for editors and CI validation)."""
    from evals.schema import Suite

    console.print_json(json.dumps(Suite.model_json_schema()))


@app.command("compare")
def compare(
    before: Annotated[Path, typer.Argument(help="The baseline report.json.")],
    after: Annotated[Path, typer.Argument(help="The candidate report.json.")],
) -> None:
    """Show what changed between two reports: regressions (exit code 1), fixes, metrics."""
    try:
        a, b = (json.loads(p.read_text(encoding="utf-8")) for p in (before, after))
    except (OSError, json.JSONDecodeError) as exc:
        err.print(f"[red]cannot read the reports: {exc}[/red]")
        raise typer.Exit(2) from None
    result = diff_reports(a, b)
    table = Table(title=f"{before} → {after}")
    for col in ("metric", "before", "after", "change"):
        table.add_column(col)
    for name, (x, y) in result["metrics"].items():
        delta = "" if x is None or y is None else f"{y - x:+.3f}"
        table.add_row(name, str(x), str(y), delta)
    console.print(table)
    for case_id in result["fixed"]:
        console.print(f"[green]fixed[/green]      {case_id}")
    for case_id in result["new"]:
        console.print(f"[dim]new[/dim]        {case_id}")
    for case_id, failures in result["regressed"].items():
        console.print(f"[red]regressed[/red]  {case_id}")
        for failure in failures:
            console.print(f"    {failure}")
    if result["regressed"]:
        raise typer.Exit(1)


def diff_reports(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Cases that passed in ``a`` and fail in ``b`` (with why), cases fixed, metric pairs."""
    before = {c["id"]: c for c in a["cases"]}
    after = {c["id"]: c for c in b["cases"]}
    keys = ("pass_rate", "policy_violations")
    metrics = {k: (a["totals"].get(k), b["totals"].get(k)) for k in keys}
    for k in ("intent_accuracy", "stage_accuracy", "handoff_precision", "handoff_recall",
              "latency_p50_ms", "latency_p95_ms"):
        metrics[k] = (a["metrics"].get(k), b["metrics"].get(k))
    return {
        "metrics": metrics,
        "regressed": {
            cid: list(dict.fromkeys(c["failures"])) for cid, c in after.items()
            if not c["passed"] and before.get(cid, {}).get("passed")
        },
        "fixed": [cid for cid, c in after.items()
                  if c["passed"] and cid in before and not before[cid]["passed"]],
        "new": [cid for cid in after if cid not in before],
    }


def _store() -> Any:
    from core.settings import get_settings
    from memory.db import make_engine
    from memory.store import Store

    return Store(make_engine(get_settings().resolved_database_url))


@app.command("export")
def export(
    jsonl: Annotated[Path | None, typer.Option(help="Write conversations as JSONL here.")] = None,
    suite: Annotated[
        Path | None, typer.Option(help="Write them as a suite YAML (expectations = decisions).")
    ] = None,
    conversation: Annotated[list[str] | None, typer.Option(help="Only these ids.")] = None,
    customer: Annotated[str | None, typer.Option(help="Only this customer's.")] = None,
) -> None:
    """Export stored conversations (JOURNEY_DATABASE_URL) for replay or as eval cases."""
    from evals.replay import export_conversations, to_case

    if not (jsonl or suite):
        err.print("[red]give --jsonl FILE and/or --suite FILE[/red]")
        raise typer.Exit(2)
    records = export_conversations(_store(), customer_id=customer, conversation_ids=conversation)
    if jsonl:
        jsonl.write_text("".join(json.dumps(r, default=str) + "\n" for r in records))
    if suite:
        cases = [to_case(r).model_dump(mode="json", exclude_defaults=True) for r in records]
        suite.write_text(yaml.safe_dump(
            {"name": "replayed", "description": "Exported from stored conversations",
             "cases": cases}, sort_keys=False, allow_unicode=True))
    console.print(f"Exported {len(records)} conversations "
                  f"({sum(len(r['turns']) for r in records)} turns).")


@app.command("replay")
def replay_cmd(
    jsonl: Annotated[
        Path | None, typer.Option(help="Conversations exported with `eval export --jsonl`.")
    ] = None,
    conversation: Annotated[list[str] | None, typer.Option(help="Only these ids.")] = None,
    brain: Annotated[str, typer.Option(help="rules, local or openai.")] = "rules",
    fail_on_change: Annotated[bool, typer.Option(help="Exit 1 if any decision changed.")] = False,
) -> None:
    """Re-run stored conversations against the current agent, each in fresh stores, and show
    the turns whose decision (intent, stage, reply, actions) changed."""
    from evals.replay import export_conversations, replay
    from evals.runner import EvalEnv

    if jsonl:
        records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
        if conversation:
            records = [r for r in records if r["conversation_id"] in conversation]
    else:
        records = export_conversations(_store(), conversation_ids=conversation)
    if not records:
        err.print("[red]no conversations to replay[/red]")
        raise typer.Exit(2)
    with console.status(f"Replaying {len(records)} conversations…"):
        results = replay(records, EvalEnv.load(), brain=brain)
    changed = 0
    for r in results:
        status = "[red]error[/red]" if r["error"] else (
            f"[yellow]{len(r['changed'])} of {r['turns']} turns changed[/yellow]"
            if r["changed"] else "[green]unchanged[/green]")
        console.print(f"{r['conversation_id']}: {status}")
        for c in r["changed"]:
            changed += 1
            console.print(f"  [bold]{c['turn'][:70]!r}[/bold]")
            for key in ("intent", "stage", "actions", "reply"):
                if key in c:
                    console.print(f"    {key}: {str(c[key]['was'])[:90]} → "
                                  f"{str(c[key]['now'])[:90]}")
    if fail_on_change and changed:
        raise typer.Exit(1)
