"""The knowledge base from the command line: check a file, see what a message retrieves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import app, console, err, refuse_file
from core.settings import get_settings

knowledge_app = typer.Typer(
    help="Check a knowledge base file (what the bot may state) and see what a customer's "
    "message retrieves from it.",
    no_args_is_help=True,
)
app.add_typer(knowledge_app, name="knowledge")


def _file(file: Path | None) -> Path:
    from agent.knowledge import default_knowledge_path

    return file or get_settings().knowledge_path or default_knowledge_path()


@knowledge_app.command("check")
def knowledge_check(
    file: Annotated[Path | None, typer.Argument(
        help="The knowledge YAML (default: JOURNEY_KNOWLEDGE_PATH, else the demo company's).")
    ] = None,
) -> None:
    """Validate a knowledge file: errors name their line (a repeated key or id, a missing
    answer, an entry without questions). Exit code 1 on errors."""
    from agent.knowledge import KnowledgeInvalid, load_knowledge

    path = _file(file)
    try:
        data = load_knowledge(path)
    except KnowledgeInvalid as exc:
        refuse_file(exc)
    entries = data["entries"]
    limit = get_settings().knowledge_in_prompt
    given = ("it whole, in its system prompt" if len(entries) <= limit else
             "the 5 entries retrieved for each message (more entries than "
             f"JOURNEY_KNOWLEDGE_IN_PROMPT={limit})")
    console.print(
        f"[green]✓[/green] {path}: {data['company']!r}, {len(entries)} entries, "
        f"{sum(len(e['questions']) for e in entries)} questions; a model gets {given}",
        highlight=False)


@knowledge_app.command("search")
def knowledge_search(
    text: Annotated[str, typer.Argument(help="A customer's message.")],
    file: Annotated[Path | None, typer.Option(
        help="The knowledge YAML (default: JOURNEY_KNOWLEDGE_PATH, else the demo company's).")
    ] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=50, help="How many entries to show.")] = 5,
) -> None:
    """The entries a message retrieves, best first, with their similarity (0 to 1): what the
    decision records and, for a large base, what the model is given."""
    from rich.table import Table

    from agent.knowledge import KnowledgeBase, KnowledgeInvalid, load_knowledge
    from memory.embeddings import get_embedder

    try:
        data = load_knowledge(_file(file))
    except KnowledgeInvalid as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    with console.status("Embedding the knowledge base…"):
        kb = KnowledgeBase(get_embedder(), data)
        found = kb.search(text, k=k)
    table = Table("score", "id", "answer")
    for entry, score in found:
        table.add_row(f"{score:.2f}", entry.id, entry.answer)
    console.print(table)
