"""A turn's overhead (instant model) beside a bare LangGraph baseline, in the same run, and the
checkpoint storage a turn that needs no approval leaves behind.

The baseline is the least a turn could be: a LangGraph graph (no checkpointer) that embeds the
message, queries the same Chroma collection for the customer, calls the same instant model (an
OpenAI client on an httpx transport that answers at once) and writes one row to the same SQL
database. The product's turn is ``Orchestrator.handle_message`` with the LLM brain on that
instant model (like ``bench/turn_overhead.py``), in three configurations: as it is (vector
writes behind the turn, one slim checkpoint per turn), with each turn waiting for its vector
upsert, and as before issue 16 (that, and every step of a turn checkpointed in full). Blocks of
``--block`` turns of each configuration alternate, so the noise of this shared machine falls on
all; a product block ends when its vector writes have landed, and that time is in its
"ms/turn, writes landed" (the block's wall time per turn).

    .venv/bin/python bench/turn_baseline.py [--turns 300] [--warmup 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, TypedDict

import sqlalchemy as sa
from common import machine as machine_name  # bench/common.py
from common import percentile
from langgraph.graph import END, START, StateGraph
from rich.console import Console
from rich.progress import track
from rich.table import Table
from turn_overhead import TEXTS, instant_model  # bench/turn_overhead.py

from agent.brains.llm import make_client
from agent.graph import builder
from core.settings import Settings
from journey.runtime import Container, build_container
from journey.turns import InboundRequest


class BareState(TypedDict, total=False):
    customer_id: str
    text: str
    vector: Any
    history: list[str]
    reply: str


def bare_graph(container: Container) -> Any:
    """embed → retrieve (the same Chroma collection, scoped to the customer) → model → one row"""
    embedder = container.embedder
    collection = container.memory.collection  # type: ignore[attr-defined]
    client = make_client("http://instant.invalid/v1", "bench", 30.0,
                         http_client=instant_model())  # the product's OpenAI client
    engine = container.store.engine
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS bench_rows "
                             "(id TEXT PRIMARY KEY, customer_id TEXT, text TEXT, reply TEXT)"))

    def embed(state: BareState) -> dict[str, Any]:
        return {"vector": embedder.embed_one(state["text"])}

    def retrieve(state: BareState) -> dict[str, Any]:
        got = collection.query(query_embeddings=state["vector"].reshape(1, -1), n_results=5,
                               where={"customer_id": state["customer_id"]},
                               include=["documents", "distances"])
        return {"history": (got["documents"] or [[]])[0]}

    def model(state: BareState) -> dict[str, Any]:
        answer = client.chat.completions.create(
            model="instant", messages=[{"role": "user", "content": state["text"]}])
        return {"reply": json.loads(answer.choices[0].message.content or "{}")["reply"]}

    def write(state: BareState) -> dict[str, Any]:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO bench_rows VALUES (:id, :c, :t, :r)"),
                         {"id": uuid.uuid4().hex, "c": state["customer_id"],
                          "t": state["text"], "r": state["reply"]})
        return {}

    graph = StateGraph(BareState)
    for name, node in (("embed", embed), ("retrieve", retrieve), ("model", model),
                       ("write", write)):
        graph.add_node(name, node)  # type: ignore[call-overload]
    graph.add_edge(START, "embed")
    graph.add_edge("embed", "retrieve")
    graph.add_edge("retrieve", "model")
    graph.add_edge("model", "write")
    graph.add_edge("write", END)
    return graph.compile()


def checkpoint_bytes(path: Path) -> dict[str, int]:
    """What the checkpoint database holds: its rows' bytes and the file (after folding the
    write-ahead log in)."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT (SELECT COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0) "
            "FROM checkpoints) + (SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes)"
        ).fetchone()[0]
        threads = conn.execute("SELECT COUNT(DISTINCT thread_id) FROM checkpoints").fetchone()[0]
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = path.with_name(path.name + "-wal")
    return {"rows": int(rows), "threads": int(threads),
            "file": path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)}


def run(turns: int, warmup: int, block: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        def container_in(name: str, write_behind: bool) -> Container:
            return build_container(Settings(
                _env_file=None,  # type: ignore[call-arg]
                data_dir=Path(tmp) / name, brain="openai",
                llm_base_url="http://instant.invalid/v1", llm_mode="json_schema",
                vector_write_behind=write_behind,
            ), llm_http_client=instant_model())

        container = container_in("product", True)
        # the same product with each turn waiting for its vector upsert (the step before)
        synced = container_in("sync-vector", False)
        # and as it was before issue 16: that, and every step of a turn checkpointed in full
        before16 = container_in("before", False)
        before16.orchestrator.graph = builder.compile(checkpointer=before16.checkpointer)
        before16.orchestrator.durability = "async"
        try:
            bare = bare_graph(container)
            times: dict[str, list[float]] = {k: [] for k in ("product", "sync", "before",
                                                             "baseline")}
            #: a block's wall time per turn, its vector writes landed (the product's included)
            amortised: dict[str, list[float]] = {k: [] for k in times}
            approvals = 0
            flush = getattr(container.memory, "flush", lambda: None)
            cp_path = container.settings.data_dir / "checkpoints.sqlite"
            start_bytes: dict[str, dict[str, int]] = {}
            legacy_path = before16.settings.data_dir / "checkpoints.sqlite"

            def product(request: InboundRequest, _text: str) -> Any:
                return container.orchestrator.handle_message(request)

            def sync(request: InboundRequest, _text: str) -> Any:
                return synced.orchestrator.handle_message(request)

            def before(request: InboundRequest, _text: str) -> Any:
                return before16.orchestrator.handle_message(request)

            ids: dict[str, str] = {}

            def baseline(request: InboundRequest, text: str) -> Any:
                customer = ids[request.customer.web_chat_id or ""]
                return bare.invoke({"customer_id": customer, "text": text})

            runners = (("product", product), ("sync", sync), ("before", before),
                       ("baseline", baseline))
            blocks = -(-(warmup + turns) // block)
            for b in track(range(blocks), description=f"blocks of {block} turns"):
                if b * block == warmup:
                    start_bytes = {"product": checkpoint_bytes(cp_path),
                                   "before": checkpoint_bytes(legacy_path)}
                batch = []
                for i in range(b * block, (b + 1) * block):
                    text = f"{TEXTS[i % len(TEXTS)]} ({i})"
                    batch.append((InboundRequest.model_validate({
                        "channel": "web_chat", "customer": {"web_chat_id": f"bench_{i % 25}"},
                        "text": text}), text))
                for key, runner in runners:
                    # every configuration embeds its messages itself (the embedder, shared by
                    # the containers, caches what it embedded for the one before)
                    container.embedder.clear_cache()
                    block_start = time.perf_counter()
                    for request, text in batch:
                        start = time.perf_counter()
                        result = runner(request, text)
                        elapsed = (time.perf_counter() - start) * 1000
                        if b * block >= warmup:
                            times[key].append(elapsed)
                        if key == "product":
                            ids[request.customer.web_chat_id or ""] = result.customer_id
                            if b * block >= warmup:
                                approvals += any(a.approval_id for a in result.actions)
                    if key == "product":
                        flush()  # the block's vector writes land before the next block runs
                    if b * block >= warmup:
                        amortised[key].append((time.perf_counter() - block_start) * 1000
                                              / len(batch))
            flush()
            after = {"product": checkpoint_bytes(cp_path), "before": checkpoint_bytes(legacy_path)}
        finally:
            container.close()
            synced.close()
            before16.close()
    b50 = statistics.median(times["baseline"])
    b95 = percentile(times["baseline"], 0.95) or 0.0
    figures: dict[str, Any] = {"turns": turns, "turns_needing_approval": approvals}
    b_mean = statistics.fmean(amortised["baseline"])
    for key, values in times.items():
        p50, p95 = statistics.median(values), percentile(values, 0.95) or 0.0
        mean = statistics.fmean(amortised[key])
        figures[key] = {"p50_ms": round(p50, 1), "p95_ms": round(p95, 1),
                        "ratio_p50": round(p50 / b50, 2), "ratio_p95": round(p95 / b95, 2),
                        "amortised_ms": round(mean, 1), "ratio_amortised": round(mean / b_mean, 2)}
    for key in ("product", "before"):
        figures[key].update({
            "checkpoint_row_bytes_per_turn":
                round((after[key]["rows"] - start_bytes[key]["rows"]) / turns),
            "checkpoint_file_bytes_per_turn":
                round((after[key]["file"] - start_bytes[key]["file"]) / turns),
            "checkpoint_threads_kept": after[key]["threads"] - start_bytes[key]["threads"],
        })
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--block", type=int, default=10,
                        help="turns run back to back per configuration before the next one")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    r = run(args.turns, args.warmup, args.block)
    machine = machine_name()
    table = Table(title=f"Turn overhead (instant model) vs a bare LangGraph turn ({machine})")
    for col in ("", "p50 ms", "p95 ms", "÷ baseline p50", "÷ baseline p95",
                "ms/turn, writes landed", "÷ baseline"):
        table.add_column(col)
    rows = (("baseline", "bare LangGraph baseline"),
            ("product", "product turn (vector writes behind)"),
            ("sync", "product turn, vector write in the turn"),
            ("before", "product turn as before (that, and every step checkpointed)"))
    for key, label in rows:
        f = r[key]
        table.add_row(label, str(f["p50_ms"]), str(f["p95_ms"]), f"{f['ratio_p50']}×",
                      f"{f['ratio_p95']}×", str(f["amortised_ms"]), f"{f['ratio_amortised']}×")
    console = Console(width=150)
    console.print(table)
    for key, label in (("product", "product"), ("before", "as before")):
        f = r[key]
        console.print(
            f"checkpoints per turn, {label} ({r['turns']} turns, {r['turns_needing_approval']} "
            f"needing approval): {f['checkpoint_row_bytes_per_turn']:,} B of rows, "
            f"{f['checkpoint_file_bytes_per_turn']:,} B of file; threads kept: "
            f"{f['checkpoint_threads_kept']}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": r}, indent=2))


if __name__ == "__main__":
    main()
