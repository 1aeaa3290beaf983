"""Per-turn orchestration time excluding the model, and LLM calls per turn.

The LLM brain runs against an *instant* fake model (an httpx transport that answers a valid
decision at once), so what is measured is everything around the model: identity resolution,
stores, retrieval, embedding, the graph, the policy gate, tools, the turn transaction and the
checkpointer. The rules brain (no LLM at all) is measured in the same run for comparison.

    .venv/bin/python bench/turn_overhead.py [--turns 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import machine as machine_name  # bench/common.py
from common import percentile
from rich.console import Console
from rich.progress import track
from rich.table import Table

from core.settings import Settings
from journey.runtime import build_container
from journey.turns import InboundRequest

TEXTS = [
    "what does the Growth plan include?",
    "how much is the Starter plan per month?",
    "do you integrate with Salesforce?",
    "my webhooks return 401 since this morning",
    "thanks, that helps!",
    "is there a free trial?",
    "we're 40 people, which plan fits?",
    "can I pay annually?",
]
DECISION = {
    "intent": "product_question",
    "stage": "consideration",
    "sentiment": "neutral",
    "confidence": 0.9,
    "reply": "Growth includes up to 25 seats, all four channels and the REST API.",
    "actions": [{"tool": "update_crm", "note": "asked about plans"}],
}


def instant_model() -> httpx.Client:
    body = {
        "id": "bench", "object": "chat.completion", "created": 0, "model": "instant",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": json.dumps(DECISION)}}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }
    return httpx.Client(transport=httpx.MockTransport(lambda _req: httpx.Response(200, json=body)))



def run(brain: str, turns: int, warmup: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=Path(tmp), brain=brain, llm_base_url="http://instant.invalid/v1",
            llm_mode="json_schema",
        )
        container = build_container(
            settings, llm_http_client=instant_model() if brain == "openai" else None
        )
        try:
            times: list[float] = []
            calls: list[int] = []
            for i in track(range(warmup + turns), description=f"{brain:>6} brain"):
                request = InboundRequest.model_validate({
                    "channel": "web_chat",
                    "customer": {"web_chat_id": f"bench_{i % 25}"},
                    "text": f"{TEXTS[i % len(TEXTS)]} ({i})",
                })
                start = time.perf_counter()
                result = container.orchestrator.handle_message(request)
                elapsed = (time.perf_counter() - start) * 1000
                if i >= warmup:
                    times.append(elapsed)
                    calls.append(result.decision.brain.llm_calls)
        finally:
            container.close()
    return {
        "brain": brain,
        "turns": turns,
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(percentile(times, 0.95) or 0.0, 1),
        "mean_ms": round(statistics.fmean(times), 1),
        "llm_calls_per_turn": round(statistics.fmean(calls), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = [run("openai", args.turns, args.warmup), run("rules", args.turns, args.warmup)]
    machine = machine_name()
    table = Table(title=f"Turn overhead excluding the model ({machine})")
    for col in ("brain", "turns", "p50 ms", "p95 ms", "mean ms", "LLM calls/turn"):
        table.add_column(col)
    for r in results:
        table.add_row(r["brain"] + (" (instant model)" if r["brain"] == "openai" else ""),
                      str(r["turns"]), str(r["p50_ms"]), str(r["p95_ms"]), str(r["mean_ms"]),
                      str(r["llm_calls_per_turn"]))
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
