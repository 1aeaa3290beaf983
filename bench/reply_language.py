"""Does the reply come in the customer's language? With a real model, through the whole turn.

Product and pricing questions written in Spanish, French, German, Italian, Portuguese and Dutch
(none of them in the eval suites or the labelled bench) go through ``handle_message`` with the
embedded model in each role, every message from its own customer. The reply's language is read
with the detector the agent uses (``py3langid``, over the languages of prompts/languages.yaml).
For each role the bench prints: replies in the customer's language, replies in English, which
brain wrote them (the model, or the rules brain's handover in the customer's language), and the
messages whose reply was in another language.

    .venv/bin/python bench/reply_language.py [--roles decide,write] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from common import figures_table  # bench/common.py
from common import machine as machine_name
from rich.console import Console
from rich.progress import track

from agent.language import language_of
from core.settings import Settings
from journey.runtime import build_container
from journey.turns import InboundRequest

MESSAGES: tuple[tuple[str, str], ...] = (
    ("es", "¿Cuánto cuesta el plan Growth al mes?"),
    ("es", "¿El plan Starter incluye WhatsApp o solo correo electrónico?"),
    ("fr", "Combien coûte l'abonnement Growth par mois ?"),
    ("fr", "Est-ce que vous proposez une intégration avec Salesforce ?"),
    ("de", "Wie viel kostet der Growth-Tarif pro Monat?"),
    ("de", "Gibt es eine kostenlose Testphase und wie lange dauert sie?"),
    ("it", "Quanto costa il piano Growth al mese?"),
    ("it", "Posso pagare annualmente invece che mensilmente?"),
    ("pt", "Quanto custa o plano Growth por mês?"),
    ("pt", "Vocês têm integração com o HubSpot?"),
    ("nl", "Wat kost het Growth-abonnement per maand?"),
    ("nl", "Kan ik jaarlijks betalen in plaats van maandelijks?"),
)


def run(role: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, data_dir=Path(tmp), brain="local",  # type: ignore[call-arg]
                            llm_role=role)
        container = build_container(settings)
        if container.brain.name != "local":
            raise SystemExit(f"the local model did not start: {container.brain_note}")
        try:
            for i, (language, text) in enumerate(track(MESSAGES, description=f"{role:>6}")):
                result = container.orchestrator.handle_message(InboundRequest.model_validate(
                    {"channel": "web_chat", "customer": {"web_chat_id": f"lang_{role}_{i}"},
                     "text": text}))
                brain = result.decision.brain
                rows.append({
                    "language": language, "text": text, "reply": result.reply or "",
                    "reply_language": language_of(result.reply or ""),
                    "by": "model" if brain.llm_calls and brain.fallback_reason is None
                    else "rules",
                })
        finally:
            container.close()
    same = [r for r in rows if r["reply_language"] == r["language"]]
    return {
        "role": role, "messages": len(rows),
        "in_the_customers_language": f"{len(same)}/{len(rows)}",
        "in_english": sum(r["reply_language"] == "en" for r in rows),
        "written_by_the_model": sum(r["by"] == "model" for r in rows),
        "model_replies_in_the_customers_language":
            f"{sum(r['by'] == 'model' for r in same)}/{sum(r['by'] == 'model' for r in rows)}",
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roles", default="decide,write",
                        help="comma-separated roles of the embedded model: decide, write")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = [run(role) for role in args.roles.split(",")]
    console = Console(width=160)
    console.print(figures_table(f"{len(MESSAGES)} questions in six languages ({machine_name()})",
                                [f"role {r['role']}" for r in results], results,
                                skip=("role", "rows")))
    for r in results:
        console.print(f"\n[bold]role {r['role']}[/bold]")
        for row in r["rows"]:
            mark = "✓" if row["reply_language"] == row["language"] else "✗"
            console.print(f"  {mark} [{row['language']}→{row['reply_language']}, {row['by']}] "
                          f"{row['text'][:50]!r} → {row['reply'][:110]!r}", highlight=False)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_name(), "results": results},
                                        indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
