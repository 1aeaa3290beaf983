"""Understanding and grounding per brain, on labelled customer messages.

The 103 messages of ``bench/data/messages.yaml`` (product questions, pricing, buying signals,
support problems, complaints, billing, requests for a person in five languages, opt-outs, churn,
praise, small talk, off-topic, and follow-ups across channels that refer back) go through
``Orchestrator.handle_message`` with each brain, every message from its own customer (known by
web chat id, email and phone, so a follow-up on another channel is the same conversation; its
``before`` messages run first, unscored). For each brain the bench prints: agreement with the
labelled intent and with who should take it (a queue, or nobody), follow-ups resolved to the
labelled subject, LLM calls per turn, the share of the turns the model answered whose reply
was used, the claims the policy's grounding rule caught, and turn latency p50 / p95; then the
messages it got wrong.

    .venv/bin/python bench/understanding.py [--brains rules,local] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from common import figures_table, percentile
from common import machine as machine_name  # bench/common.py
from rich.console import Console
from rich.progress import track

from core.settings import Settings
from journey.runtime import build_container
from journey.turns import InboundRequest, TurnResult

DATA = Path(__file__).parent / "data" / "messages.yaml"


def _customer(i: int) -> dict[str, str]:
    return {"web_chat_id": f"bench_u{i}", "email": f"u{i}@bench.example",
            "phone": f"+1415555{i:04d}"}


def _handoff(result: TurnResult) -> str:
    queues = [a.arguments.get("queue") for a in result.actions
              if a.tool == "escalate_to_human" and a.executed]
    return str(queues[0]) if queues else "none"


def run(brain: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, data_dir=Path(tmp), brain=brain)  # type: ignore[call-arg]
        container = build_container(settings)
        if container.brain.name != brain:
            raise SystemExit(f"brain {brain} did not start: {container.brain_note}")
        try:
            for i, m in enumerate(track(messages, description=f"{brain:>6} brain")):
                for earlier in m.get("before", []):
                    container.orchestrator.handle_message(InboundRequest.model_validate(
                        {"channel": earlier["channel"], "customer": _customer(i),
                         "text": earlier["text"]}))
                request = InboundRequest.model_validate(
                    {"channel": m.get("channel", "web_chat"), "customer": _customer(i),
                     "text": m["text"]})
                t0 = time.perf_counter()
                result = container.orchestrator.handle_message(request)
                elapsed = (time.perf_counter() - t0) * 1000
                d = result.decision
                referred = {r.split(":", 1)[1].split("=", 1)[0]: r.split("=", 1)[1]
                            for r in d.reasons if r.startswith("subject:")}
                rows.append({
                    "text": m["text"], "ms": elapsed,
                    "intent": d.intent, "intent_label": m["intent"],
                    "handoff": _handoff(result), "handoff_label": m["handoff"],
                    "subject_ok": referred == m["subject"] if "subject" in m else None,
                    "llm_calls": d.brain.llm_calls,
                    "model_used": d.brain.llm_calls > 0 and d.brain.fallback_reason is None,
                    "not_used_because": (d.brain.fallback_reason or "").split(":")[1].strip()
                    if d.brain.llm_calls and d.brain.fallback_reason else None,
                    "reply": result.reply or "",
                    "ungrounded": any("ungrounded_claim" in v.reason_codes for v in d.verdicts),
                })
        finally:
            container.close()
    times = [r["ms"] for r in rows]
    answered = [r for r in rows if r["llm_calls"]]
    follow = [r for r in rows if r["subject_ok"] is not None]
    return {
        "brain": brain, "messages": len(rows),
        "intent_agreement": round(sum(r["intent"] == r["intent_label"] for r in rows)
                                  / len(rows), 3),
        "handoff_agreement": round(sum(r["handoff"] == r["handoff_label"] for r in rows)
                                   / len(rows), 3),
        "follow_ups_resolved": f"{sum(bool(r['subject_ok']) for r in follow)}/{len(follow)}",
        "llm_calls_per_turn": round(sum(r["llm_calls"] for r in rows) / len(rows), 2),
        "turns_the_model_answered": len(answered),
        "model_reply_used": round(sum(r["model_used"] for r in answered) / len(answered), 3)
        if answered else None,
        "model_reply_not_used_because": dict(Counter(
            r["not_used_because"].split(" (")[0] for r in answered if r["not_used_because"])),
        "ungrounded_claims_caught": sum(r["ungrounded"] for r in rows),
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(percentile(times, 0.95) or 0.0, 1),
        "wrong": [{k: r[k] for k in ("text", "intent", "intent_label", "handoff",
                                     "handoff_label")}
                  for r in rows if r["intent"] != r["intent_label"]
                  or r["handoff"] != r["handoff_label"] or r["subject_ok"] is False],
        "replies": [r["reply"] for r in rows],
        "answered": [r["llm_calls"] > 0 and r["model_used"] for r in rows],
    }


def _rewritten(results: list[dict[str, Any]]) -> None:
    """With the rules brain in the same run: of the model's replies used, how many say the
    rules' draft in other words (the rest are the draft, word for word)."""
    rules = next((r for r in results if r["brain"] == "rules"), None)
    for r in results:
        if rules is None or r is rules or not r["turns_the_model_answered"]:
            r["used_replies_reworded"] = "—"
            continue
        used = [(mine, draft) for mine, draft, u in zip(r["replies"], rules["replies"],
                                                         r["answered"], strict=True) if u]
        changed = sum(" ".join(a.split()).casefold() != " ".join(b.split()).casefold()
                      for a, b in used)
        r["used_replies_reworded"] = f"{changed}/{len(used)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brains", default="rules,local",
                        help="comma-separated: rules, local (the embedded model)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    messages: list[dict[str, Any]] = yaml.safe_load(DATA.read_text())["messages"]
    results = [run(brain, messages) for brain in args.brains.split(",")]
    _rewritten(results)
    console = Console(width=160)
    console.print(figures_table(f"{len(messages)} labelled messages ({machine_name()})",
                                [r["brain"] for r in results], results,
                                skip=("brain", "wrong", "replies", "answered")))
    for r in results:
        console.print(f"\n[bold]{r['brain']}[/bold]: {len(r['wrong'])} messages not as labelled")
        for w in r["wrong"]:
            console.print(f"  {w['text'][:70]!r}: intent {w['intent']} (label "
                          f"{w['intent_label']}), handoff {w['handoff']} (label "
                          f"{w['handoff_label']})", highlight=False)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_name(), "results": results},
                                        indent=2))


if __name__ == "__main__":
    main()
