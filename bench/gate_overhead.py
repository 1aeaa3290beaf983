"""What the policy engine adds to a turn: the same turns with the real ``policy_gate`` node
and with a pass-through node that approves every candidate unchanged (the baseline; it exists
only in this script).

Two graphs share one container (same stores, same model); turns alternate between them so
both see the same machine state. Reported: the whole turn, and the gate node alone (its own
queries for caps and stalled turns included).

    .venv/bin/python bench/gate_overhead.py [--turns 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import machine as machine_name  # bench/common.py
from common import percentile
from rich.console import Console
from rich.progress import track
from rich.table import Table

from agent import nodes
from agent.graph import make_builder
from core.settings import Settings
from evals.broken import pass_through_gate
from journey.runtime import build_container
from journey.turns import InboundRequest, Orchestrator

TEXTS = [
    "what does the Growth plan include?",
    "how much is the Starter plan per month?",
    "I want to talk to a person about my invoice",
    "my webhooks return 401 since this morning",
    "thanks, that helps!",
    "we're 500 seats and need SSO and a quote",
    "STOP",
    "can I pay annually?",
]


def timed(fn: Callable[..., dict[str, Any]], sink: list[float]) -> Callable[..., dict[str, Any]]:
    def node(state: dict[str, Any], runtime: Any) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            return fn(state, runtime)
        finally:
            sink.append((time.perf_counter() - start) * 1000)

    node.__name__ = fn.__name__
    return node



def summary(name: str, turn: list[float], node: list[float]) -> dict[str, Any]:
    return {
        "variant": name,
        "turns": len(turn),
        "turn_p50_ms": round(statistics.median(turn), 2),
        "turn_p95_ms": round(percentile(turn, 0.95) or 0.0, 2),
        "node_p50_ms": round(statistics.median(node), 3),
        "node_p95_ms": round(percentile(node, 0.95) or 0.0, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300, help="measured turns per variant")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    gate_node: list[float] = []
    base_node: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            _env_file=None, data_dir=Path(tmp), brain="rules"  # type: ignore[call-arg]
        )
        container = build_container(settings)
        services = container.orchestrator.services

        def graph(node: Callable[..., dict[str, Any]]) -> Any:
            return make_builder(node).compile(checkpointer=container.checkpointer)

        variants = {
            "policy engine": Orchestrator(services, graph(timed(nodes.policy_gate, gate_node))),
            "pass-through (baseline)": Orchestrator(
                services, graph(timed(pass_through_gate, base_node))
            ),
        }
        turn_ms: dict[str, list[float]] = {name: [] for name in variants}
        try:
            total = args.warmup + args.turns
            for i in track(range(total * 2), description="turns"):
                name = list(variants)[i % 2]
                n = i // 2
                request = InboundRequest.model_validate({
                    "channel": "web_chat",
                    "customer": {"web_chat_id": f"bench_{name[:4]}_{n % 25}"},
                    "text": f"{TEXTS[n % len(TEXTS)]}",
                    "external_id": f"{name[:4]}-{n}",
                })
                start = time.perf_counter()
                variants[name].handle_message(request)
                if n >= args.warmup:
                    turn_ms[name].append((time.perf_counter() - start) * 1000)
        finally:
            container.close()
    results = [
        summary("policy engine", turn_ms["policy engine"], gate_node[args.warmup:]),
        summary("pass-through (baseline)", turn_ms["pass-through (baseline)"],
                base_node[args.warmup:]),
    ]
    added_p50 = round(results[0]["turn_p50_ms"] - results[1]["turn_p50_ms"], 2)
    node_added = round(results[0]["node_p50_ms"] - results[1]["node_p50_ms"], 3)
    machine = machine_name()
    table = Table(title=f"Policy gate overhead per turn ({machine}, rules brain, SQLite)")
    for col in ("variant", "turns", "turn p50 ms", "turn p95 ms", "gate node p50 ms",
                "gate node p95 ms"):
        table.add_column(col)
    for r in results:
        table.add_row(r["variant"], str(r["turns"]), str(r["turn_p50_ms"]),
                      str(r["turn_p95_ms"]), str(r["node_p50_ms"]), str(r["node_p95_ms"]))
    console = Console()
    console.print(table)
    console.print(f"The gate adds {node_added} ms p50 as a node; whole turns differ by "
                  f"{added_p50} ms p50 (target: under 5 ms).")
    if args.json:
        args.json.write_text(json.dumps(
            {"machine": machine, "results": results, "gate_node_added_p50_ms": node_added,
             "turn_added_p50_ms": added_p50}, indent=2))


if __name__ == "__main__":
    main()
