"""The ``journey`` command and its consoles (the sub-commands register on ``app``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from prompts.yamlcheck import YamlInvalid

app = typer.Typer(
    help="journey-orchestrator: a real-time, policy-checked LLM decision layer for customer "
    "journeys.\n\nTypical use: `journey init` once, `journey seed-demo`, `journey serve`, then "
    "`journey chat` in a second terminal. Settings come from JOURNEY_* variables and .env "
    "(see README.md, Configuration).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)



def refuse_file(exc: YamlInvalid) -> NoReturn:
    """An invalid YAML file (policy, knowledge…): each problem on its line, exit code 1."""
    err.print(f"[red]✗ {exc.source}: invalid {exc.kind}[/red]")
    for problem in exc.problems:
        err.print(f"  {problem}")
    raise typer.Exit(1)
