"""The ``journey`` command and its consoles (the sub-commands register on ``app``)."""

from __future__ import annotations

import typer
from rich.console import Console

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

