"""Scale-out: 2 API + 2 worker processes vs 1 + 1, on PostgreSQL and a Chroma server.

Each topology gets a fresh PostgreSQL database, a fresh collection on one ``chroma run``
server, and the same instant model (a chat-completions server in its own process, see
``bench/concurrency.py``):

- the API: ``journey serve --workers N`` (uvicorn worker processes on one port, no worker
  threads: ``JOURNEY_WORKERS=0``), the stateless tier a load balancer would front;
- the workers: N ``journey worker --threads T`` processes (queued turns, the outbox relay).

The work: ``--conversations`` customers writing ``--messages`` messages each, one after
another; half of them through ``POST /v1/messages`` (answered inline by an API process), half
through the signed inbound webhook (stored and queued; a worker runs the turn). Throughput is
turns decided per second, from the first request until the last decision is committed. Then
the database is audited: every message decided once (0 double-processing: one decision, one
reply, one model call per message), and each conversation's turns one at a time in arrival
order (0 overlaps, 0 inversions).

    .venv/bin/python bench/scale_out.py [--conversations 40] [--messages 5] [--threads 2]
        [--topologies 1,2] [--rounds 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from common import machine as machine_name  # bench/common.py
from concurrency import (  # bench/concurrency.py
    KEY,
    TEXTS,
    chroma_server,
    group_cpu_s,
    instant_model,
    journey_process,
    journey_serve,
    model_calls,
    scratch_postgres,
)
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

from channels.webhook import sign_webhook

SECRET = "bench-webhook-secret"
WORKER_READY = "worker(s) on postgresql; Ctrl+C stops."


def _send(client: httpx.Client, inline: bool, who: str, i: int) -> None:
    body = {"channel": "web_chat", "customer": {"web_chat_id": who},
            "text": f"{TEXTS[i % len(TEXTS)]} ({i})", "external_id": f"{who}-{i}"}
    if inline:
        response = client.post("/v1/messages", json=body)
    else:
        raw = json.dumps(body).encode()
        response = client.post("/v1/channels/webhook/inbound", content=raw, headers={
            "Content-Type": "application/json",
            "X-Journey-Signature": sign_webhook(SECRET, raw, int(time.time()))})
    if response.status_code != 200:
        raise RuntimeError(f"{response.request.url.path}: {response.status_code} "
                           f"{response.text[:300]}")


def _decided(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM decisions "
                                         "WHERE inbound_message_id IS NOT NULL")).scalar_one())
    finally:
        engine.dispose()


def audit(url: str) -> dict[str, int]:
    """Double-processing and per-conversation order, from the database."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            inbound = int(conn.execute(text(
                "SELECT count(*) FROM messages WHERE direction = 'inbound'")).scalar_one())
            twice = int(conn.execute(text(
                "SELECT count(*) FROM (SELECT inbound_message_id FROM decisions "
                "WHERE inbound_message_id IS NOT NULL GROUP BY inbound_message_id "
                "HAVING count(*) > 1) t")).scalar_one())
            replies = int(conn.execute(text(
                "SELECT count(*) FROM messages WHERE direction = 'outbound'")).scalar_one())
            rows = conn.execute(text(
                "SELECT m.conversation_id, m.id, d.created_at, d.latency_ms FROM messages m "
                "JOIN decisions d ON d.inbound_message_id = m.id "
                "ORDER BY m.conversation_id, m.created_at, m.id")).all()
    finally:
        engine.dispose()
    lanes: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
    for conversation, _mid, ended, latency in rows:
        lanes[conversation].append((ended - timedelta(milliseconds=latency), ended))
    overlaps = inversions = 0
    for turns in lanes.values():
        for i, (a_start, a_end) in enumerate(turns):
            for b_start, b_end in turns[i + 1:]:
                overlaps += a_start < b_end and b_start < a_end
                inversions += b_end < a_end
    return {"inbound": inbound, "decided": len(rows), "decided_twice": twice,
            "replies": replies, "overlaps": overlaps, "inversions": inversions,
            "conversations": len(lanes)}


def run(n: int, model: str, chroma: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    with ExitStack() as stack:
        url = stack.enter_context(scratch_postgres(f"x{n}"))
        common = {"JOURNEY_DATABASE_URL": url, "JOURNEY_CHROMA_URL": chroma,
                  "JOURNEY_CHROMA_COLLECTION": f"scale_{n}_{int(time.time())}",
                  "JOURNEY_BRAIN": "openai", "JOURNEY_LLM_BASE_URL": model,
                  "JOURNEY_LLM_API_KEY": "instant", "JOURNEY_LLM_MODE": "json_schema",
                  "JOURNEY_WEBHOOK_SECRET": SECRET}
        served = stack.enter_context(journey_serve(
            {**common, "JOURNEY_WORKERS": 0, "JOURNEY_DATA_DIR": root / f"api{n}"},
            root / f"api{n}", workers=n))
        base = served.base
        groups = [served.pgid]
        for w in range(n):
            groups.append(stack.enter_context(journey_process(
                ["worker", "--threads", str(args.threads)],
                {**common, "JOURNEY_DATA_DIR": root / f"worker{n}-{w}"},
                root / f"worker{n}-{w}", ready=WORKER_READY)).pid)
        # warm-up: each process's model client, caches and connections (not counted)
        with _clients(base, 8) as clients, ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda c: _send(clients[c], c % 2 == 0, f"warm{n}_{c}", 0), range(8)))
        _wait_decided(url, 8, 300)
        calls_before = model_calls(model)
        total = args.conversations * args.messages

        def person(c: int) -> None:
            with _client(base) as client:
                for i in range(args.messages):
                    _send(client, c % 2 == 0, f"x{n}_{c}", i)

        cpu, machine = _journey_cpu_s(groups), _machine_busy_s()
        start = time.perf_counter()
        with ThreadPoolExecutor(args.conversations) as pool:
            list(pool.map(person, range(args.conversations)))
        sent = time.perf_counter() - start
        _wait_decided(url, total + 8, 900)
        wall = time.perf_counter() - start
        cpu, machine = _journey_cpu_s(groups) - cpu, _machine_busy_s() - machine
        calls = model_calls(model) - calls_before
        found = audit(url)
    return {"api_processes": n, "worker_processes": n, "worker_threads": args.threads,
            "turns": total, "sent_s": round(sent, 1), "wall_s": round(wall, 1),
            "turns_per_s": round(total / wall, 1), "model_calls": calls,
            # the journey processes' CPU, and every process's on the machine (PostgreSQL,
            # Chroma, this script and other users included)
            "journey_cores": round(cpu / wall, 2), "machine_cores": round(machine / wall, 2),
            **found}


def _journey_cpu_s(groups: list[int]) -> float:
    return sum(group_cpu_s(g) for g in groups)


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy so far (all cores; /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _clients(base: str, n: int) -> Iterator[list[httpx.Client]]:
    clients = [_client(base) for _ in range(n)]
    try:
        yield clients
    finally:
        for c in clients:
            c.close()


def _client(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=600)


def _wait_decided(url: str, n: int, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while _decided(url) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{_decided(url)} of {n} messages decided after {deadline_s} s")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=40)
    parser.add_argument("--messages", type=int, default=5, help="messages per conversation")
    parser.add_argument("--threads", type=int, default=2, help="threads per worker process")
    parser.add_argument("--topologies", default="1,2",
                        help="N for N API + N worker processes, comma-separated")
    parser.add_argument("--rounds", type=int, default=2,
                        help="run the topologies in turn this many times (the machine's load "
                        "drifts; the table shows each round and the median)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    # a stopped run still stops its processes and drops its databases
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, instant_model() as model, \
            chroma_server(Path(tmp) / "chroma") as chroma:
        topologies = [int(x) for x in args.topologies.split(",")]
        for round_no in range(1, args.rounds + 1):
            for n in topologies:
                row = run(n, model, chroma, args, Path(tmp) / f"round{round_no}")
                results.append({**row, "round": round_no})
    for n in topologies:  # the median of the rounds, audits summed
        rows = [r for r in results if r["api_processes"] == n]
        results.append({**rows[0], "round": "median",
                        "turns_per_s": round(statistics.median(r["turns_per_s"] for r in rows), 1),
                        "wall_s": round(statistics.median(r["wall_s"] for r in rows), 1),
                        **{k: round(statistics.median(r[k] for r in rows), 2)
                           for k in ("journey_cores", "machine_cores")},
                        **{k: sum(r[k] for r in rows) for k in (
                            "turns", "model_calls", "decided_twice", "replies", "overlaps",
                            "inversions")}})
    machine = machine_name()
    table = Table(title=f"Scale-out on PostgreSQL + chroma run, instant model ({machine})")
    base = topologies[0]
    for col in ("round", "API + workers", "turns", "wall s", "turns/s",
                f"÷ {base} + {base} (same round)", "journey cores busy", "machine cores busy",
                "model calls", "decided twice", "replies", "overlaps", "inversions"):
        table.add_column(col)
    for r in results:
        first = next(x["turns_per_s"] for x in results
                     if x["round"] == r["round"] and x["api_processes"] == base)
        table.add_row(str(r["round"]), f"{r['api_processes']} + {r['worker_processes']} "
                      f"(×{r['worker_threads']} threads)", str(r["turns"]), str(r["wall_s"]),
                      str(r["turns_per_s"]), f"{r['turns_per_s'] / first:.2f}×",
                      str(r["journey_cores"]), str(r["machine_cores"]),
                      str(r["model_calls"]), str(r["decided_twice"]), str(r["replies"]),
                      str(r["overlaps"]), str(r["inversions"]))
    Console(width=200).print(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
