"""The policy from the command line: check a file, explain the rules in force."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import app, console, err, refuse_file
from core.settings import get_settings

policy_app = typer.Typer(
    help="Check and explain the policy (consent, caps, quiet hours, escalation, content, "
    "approvals) that the engine enforces.",
    no_args_is_help=True,
)
app.add_typer(policy_app, name="policy")


@policy_app.command("check")
def policy_check(
    file: Annotated[Path, typer.Argument(help="The policy YAML to check.", exists=False)],
) -> None:
    """Validate a policy file: errors name their line; warnings flag rules that cannot match
    and templates the content rules would block. Exit code 1 on errors."""
    from policy.lifecycle import load_lifecycle
    from policy.lint import lint
    from policy.loader import PolicyError, load_policy
    from prompts import load_yaml

    try:
        policy = load_policy(file)
    except PolicyError as exc:
        refuse_file(exc)
    intents = list(load_yaml("intents.yaml")["intents"])
    warnings = lint(policy, intents, load_lifecycle().stages)
    console.print(
        f"[green]✓[/green] {file}: policy {policy.name!r} version {policy.version} is valid "
        f"({len(policy.contact.caps)} caps, {len(policy.escalation.rules)} escalation rules, "
        f"{len(policy.content.forbidden)} forbidden claims, {len(policy.approvals)} approval "
        "rules)"
    )
    for warning in warnings:
        console.print(f"  [yellow]warning:[/yellow] {warning}")


@policy_app.command("explain")
def policy_explain(
    file: Annotated[
        Path | None,
        typer.Option(help="A policy file (default: JOURNEY_POLICY_PATH, else the built-in)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the policy as JSON.")] = False,
) -> None:
    """Print the effective policy: every default filled in, in plain words."""
    from policy.explain import explain
    from policy.loader import PolicyError, default_policy_path, load_policy

    path = file or get_settings().policy_path or default_policy_path()
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    if as_json:
        console.print_json(policy.model_dump_json())
        return
    console.print(f"[bold]Policy {policy.name!r}[/bold] version {policy.version} from {path}\n")
    for title, table in explain(policy):
        console.print(f"[bold]{title}[/bold]")
        console.print(table)
