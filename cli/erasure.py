"""``journey customers erase ID``: the right to erasure from the command line."""

from __future__ import annotations

import getpass
import json
from typing import Annotated, Any

import typer

from cli.app import console, err
from cli.customers import customers_app
from core.errors import NotFound
from core.settings import Settings, get_settings

ERASE_HELP = """Erase a customer (GDPR art. 17, CCPA) from every store and from the disk.

Their profile and every profile merged into it, identities, conversations and messages,
decisions, approvals, outbox, CRM activities, handoffs and their events, behavioural events,
jobs, the consent ledger, the LangGraph checkpoints of their turns, their vector memory and the
devbox files' lines are removed; SQLite files are vacuumed and their write-ahead logs
truncated. What remains is an audit record without personal data (when, by whom, what was
removed, keyed hashes of the identities, so data naming them later is refused). It is printed
as JSON. Erasing again prints the same record with "already": true.

\b
By default the erasure runs in this process, on the stores JOURNEY_* settings name. While
`journey serve` runs on an embedded Chroma (no JOURNEY_CHROMA_URL), use --server instead: the
server erases through DELETE /v1/customers/{id} with JOURNEY_CLI_API_KEY (scope
customers:erase or admin)."""


@customers_app.command("erase", help=ERASE_HELP)
def erase(
    customer_id: Annotated[str, typer.Argument(help="The customer's id (cus_…).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
    = False,
    by: Annotated[str | None, typer.Option(
        help="Who erases, for the audit record (default: cli:<your user name>).")] = None,
    server: Annotated[str | None, typer.Option(
        help="Ask this running server (e.g. http://127.0.0.1:8000) instead.")] = None,
) -> None:
    if not yes:
        typer.confirm(f"Erase customer {customer_id} and everything held about them? "
                      "This cannot be undone", abort=True)
    settings = get_settings()
    who = by or f"cli:{getpass.getuser()}"
    try:
        record = (_through_server(settings, server, customer_id) if server
                  else _in_process(settings, customer_id, who))
    except NotFound as exc:
        err.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from None
    console.print_json(json.dumps(record, default=str))


def _in_process(settings: Settings, customer_id: str, by: str) -> dict[str, Any]:
    from journey.runtime import build_container

    # erasing decides nothing: no model is started
    with console.status("Opening the stores…"):
        container = build_container(settings.model_copy(update={"brain": "rules"}))
    try:
        if container.erasure is None:  # pragma: no cover - build_container always sets it
            raise RuntimeError("the container has no erasure service")
        return container.erasure.erase(customer_id, by=by).model_dump(mode="json")
    finally:
        container.close()


def _through_server(settings: Settings, server: str, customer_id: str) -> dict[str, Any]:
    import httpx

    key = settings.cli_api_key.get_secret_value()
    try:
        response = httpx.delete(f"{server.rstrip('/')}/v1/customers/{customer_id}",
                                headers={"Authorization": f"Bearer {key}"}, timeout=300)
    except httpx.HTTPError as exc:
        err.print(f"[red]cannot reach the server at {server}: {exc}[/red]")
        raise typer.Exit(1) from None
    if response.status_code == 404:
        raise NotFound(str(response.json().get("detail")))
    if response.status_code != 200:
        err.print(f"[red]{response.status_code}: {response.text}[/red]")
        raise typer.Exit(1)
    data: dict[str, Any] = response.json()
    return data
