"""The ``journey`` command line: serve the API, chat as a customer, seed the demo data,
operate the outbox and the inbox, check the policy, run the eval suites.

    app.py      the ``journey`` Typer app and its consoles
    server.py   init, seed-demo, serve, worker, llm serve
    chat.py     chat
    ops.py      outbox list/replay, handoffs list/metrics
    policy.py   policy check/explain
    knowledge.py  knowledge check/search
    journeys.py   journeys list/metrics/preview
    customers.py  the customers group (import/export in bulk.py, erase in erasure.py)
    (eval)      the eval suites' commands, from ``evals.cli``
"""

from __future__ import annotations

from pydantic import ValidationError

from cli import bulk, chat, customers, erasure, journeys, knowledge, ops, policy, server
from cli.app import app, err

__all__ = [
    "app", "bulk", "chat", "customers", "erasure", "journeys", "knowledge", "main", "ops",
    "policy", "server",
]


def _add_eval() -> None:
    from evals.cli import app as eval_app

    app.add_typer(eval_app, name="eval")


_add_eval()


def main() -> None:
    try:
        app()
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        # a JOURNEY_* variable or .env line is invalid: say which, not a traceback
        err.print("[red]invalid settings[/red] (JOURNEY_* variables or .env):")
        for problem in exc.errors():
            name = "JOURNEY_" + "_".join(str(p) for p in problem["loc"]).upper()
            message = str(problem["msg"]).removeprefix("Value error, ")
            err.print(f"  {name + ': ' if problem['loc'] else ''}{message}", highlight=False)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
