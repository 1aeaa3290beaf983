"""``journey customers import`` and ``journey customers export``: profiles in bulk, with a
progress bar, a per-row report of what was refused, and the same format both ways."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cli.app import console, err
from cli.customers import customers_app
from core.errors import Invalid
from core.settings import Settings, get_settings
from journey.bulk import (
    CSV_HELP,
    Exporter,
    Format,
    Importer,
    Refusal,
    count_rows,
    guess_format,
    read_rows,
)

#: refusals printed on screen; the report file has them all
SHOWN = 10

IMPORT_HELP = f"""Create or update customers from a CSV or JSON Lines file.

Each row means what the same request to PUT /v1/customers means: the profile any of its
identities names (created when none does; two profiles it names are merged), name, locale,
timezone, lifecycle stage (only forward unless force), channel preference, attributes (merged
key by key) and consent per channel and purpose. Every consent change goes into the consent
ledger with the row's source (default: import), at and evidence, and --by as who. Rows that
change nothing write nothing: running the same file twice changes nothing the second time.

A JSON Lines row is the body of PUT /v1/customers:

\b
  {{"identities": {{"email": "dana@example.com", "external_id": "shop-42"}},
   "name": "Dana Reyes", "timezone": "America/New_York", "lifecycle_stage": "consideration",
   "attributes": {{"plan": "Growth"}},
   "consent": {{"email": {{"marketing": {{"status": "granted", "source": "signup-form",
                                       "at": "2026-11-01T10:00:00Z"}}}}}}}}

\b
{CSV_HELP}

\b
Example:
  email,phone,name,timezone,consent.email.marketing,consent.email.marketing.at,attr.plan
  dana@example.com,+1 415 555 0100,Dana Reyes,America/New_York,granted,2026-11-01T10:00:00Z,Growth

\b
  journey customers import customers.csv --by alice
  journey customers import customers.jsonl --report refused.jsonl

A refused row (an invalid field, a stage that would move back, an identity whose person was
erased) is reported with its row (the file's line; a CSV's header is row 1), the field and
why, in the report file (JSON Lines, default: beside the input, <name>.report.jsonl) and on
screen; the other rows are imported.
Exit status: 0 when every row was imported, 1 when some were refused, 2 when the file could
not be read at all."""

EXPORT_HELP = """Write every live profile in the import's format (JSON Lines or CSV).

Importing the file into an empty database gives the same profiles: identities, name, locale,
timezone, stage, channel preference, attributes, and consent with the source, time and
evidence of the ledger row that set it. The profiles are read a page at a time.

\b
  journey customers export -o customers.jsonl
  journey customers export --format csv -o customers.csv
  journey customers export | gzip > customers.jsonl.gz"""


def _settings() -> Settings:
    from core import identity

    settings = get_settings()
    identity.set_default_region(settings.default_phone_region)
    return settings


def _services(settings: Settings) -> Any:
    from journey.customers import CustomerService
    from memory import migrate
    from memory.db import make_engine
    from memory.store import Store
    from policy.lifecycle import load_lifecycle

    engine = make_engine(settings.resolved_database_url)
    migrate.upgrade(engine)
    return CustomerService(Store(engine), load_lifecycle())


def _follow_merges(settings: Settings, store: Any, merges: list[tuple[str, str]]) -> None:
    """What the server does after a merge: the merged profile's vector memory (its messages)
    follows it. A profile without messages has none: the embedder is not loaded for it."""
    moved = {(m["survivor_id"], m["merged_id"]): m["moved"]
             for survivor in {s for s, _ in merges} for m in store.merges(survivor)}
    merges = [pair for pair in merges if (moved.get(pair) or {}).get("messages", 1)]
    if not merges:
        return
    from journey.runtime import make_memory
    from memory.embeddings import get_embedder

    try:
        memory = make_memory(settings, get_embedder())
        for survivor, merged in merges:
            memory.reassign(merged, survivor)
    except Exception as exc:  # the import stands: say what is left to do
        err.print(f"The profiles were merged but their conversation memory could not be moved "
                  f"({exc}): their past messages stay under the merged ids.", style="yellow",
                  markup=False, highlight=False)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(), console=err, transient=False,
    )


@customers_app.command("import", help=IMPORT_HELP)
def import_(
    file: Annotated[Path, typer.Argument(
        exists=True, dir_okay=False, readable=True, help="A .csv or .jsonl file.")],
    format: Annotated[str | None, typer.Option(
        "--format", help="csv or jsonl (default: from the file's name).")] = None,
    report: Annotated[Path | None, typer.Option(
        help="Where to write the refused rows (JSON Lines; default: <file>.report.jsonl "
        "beside the input).")] = None,
    by: Annotated[str | None, typer.Option(
        help="Who is importing, for the consent ledger (default: your login name).")] = None,
    batch_size: Annotated[int, typer.Option(
        min=1, max=10000, help="Rows per transaction.")] = 1000,
) -> None:
    fmt = _format(format, file)
    report = report or file.with_name(f"{file.stem}.report.jsonl")
    settings = _settings()
    customers = _services(settings)
    merges: list[tuple[str, str]] = []
    customers.store.on_merge.append(lambda survivor, merged: merges.append((survivor, merged)))
    importer = Importer(customers, by=by or _login(), batch_size=batch_size)
    refusals: list[Refusal] = []
    total = count_rows(file, fmt)
    with file.open(encoding="utf-8-sig", newline="") as source, \
            report.open("w", encoding="utf-8") as out, _progress() as progress:
        task = progress.add_task(f"importing {file.name}", total=total)

        def refused(refusal: Refusal) -> None:
            out.write(json.dumps(refusal.as_json(), ensure_ascii=False) + "\n")
            if len(refusals) < SHOWN:
                refusals.append(refusal)

        try:
            summary = importer.run(read_rows(source, fmt), on_refusal=refused,
                                   on_row=lambda: progress.advance(task))
        except Invalid as exc:
            progress.stop()
            err.print(f"{file.name}: {exc.detail}", style="red", markup=False, highlight=False)
            raise typer.Exit(2) from None
        progress.update(task, total=summary.rows, completed=summary.rows)
    _follow_merges(settings, customers.store, merges)
    console.print(
        f"{summary.rows} rows: {summary.created} created, {summary.updated} updated, "
        f"{summary.unchanged} unchanged, {summary.merged} merged, {summary.refused} refused; "
        f"{summary.ledger_rows} consent ledger rows added.", highlight=False, soft_wrap=True)
    if summary.refused:
        for refusal in refusals:
            console.print(f"  {refusal}", highlight=False, markup=False, soft_wrap=True)
        console.print(f"The refused rows, with the field and why: {report}", highlight=False)
        raise typer.Exit(1)


@customers_app.command("export", help=EXPORT_HELP)
def export(
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", dir_okay=False, help="The file to write (default: standard output).")]
    = None,
    format: Annotated[str | None, typer.Option(
        "--format", help="jsonl or csv (default: from -o's name, else jsonl).")] = None,
) -> None:
    fmt = _format(format, output) if format or output else "jsonl"
    exporter = Exporter(_services(_settings()).store)
    with _open(output) as out, _progress() as progress:
        task = progress.add_task("exporting", total=exporter.count())
        done = exporter.write(out, fmt, on_profile=lambda: progress.advance(task))
    err.print(f"exported {done.profiles} profiles ({done.rows} rows) to "
              f"{output or 'standard output'}", highlight=False, soft_wrap=True)
    for customer_id, identities in done.left_out[:SHOWN]:
        err.print(f"  {customer_id}: left out " + ", ".join(f"{i.kind} {i.value}"
                                                           for i in identities)
                  + " (no import row can carry them)", highlight=False, markup=False,
                  soft_wrap=True)
    if len(done.left_out) > SHOWN:
        err.print(f"  … and {len(done.left_out) - SHOWN} more profiles with identities left out")


def _format(given: str | None, path: Path | None) -> Format:
    if given is not None:
        if given not in ("csv", "jsonl"):
            raise typer.BadParameter("csv or jsonl", param_hint="--format")
        return "csv" if given == "csv" else "jsonl"
    try:
        return guess_format(path) if path else "jsonl"
    except Invalid as exc:
        raise typer.BadParameter(exc.detail, param_hint="--format") from None


@contextmanager
def _open(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    with path.open("w", encoding="utf-8", newline="") as out:
        yield out


def _login() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container)
        return "cli"
