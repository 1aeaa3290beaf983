"""Customers from the command line: bring them in (import), take them out (export), erase one.

The commands register on ``customers_app`` from their own modules (``cli.bulk``,
``cli.erasure``)."""

from __future__ import annotations

import typer

from cli.app import app

customers_app = typer.Typer(
    help="Customers: import profiles from CSV or JSON Lines, export them, erase one "
    "(right to erasure).",
    no_args_is_help=True,
)
app.add_typer(customers_app, name="customers")
