"""The human inbox under load, on SQLite and PostgreSQL: what an agent waits for.

Everything runs for real: the API under uvicorn, the worker thread `journey serve` starts (the
relay delivers replies), the rules brain, the stores. First N customers ask for a person on web
chat and write twice more while they wait (N open handoffs with unread messages). Then, each
timed over HTTP, median and p95:

- list: `GET /v1/handoffs?status=active&limit=100` (what the console polls every 2 s);
- packet: `GET /v1/handoffs/{id}` (the conversation view);
- claim: two agents claim the same handoff at the same instant (threads behind a barrier);
  every race must have exactly one winner;
- reply → chat: an agent's reply, from the request until the relay has delivered it to the
  customer's web-chat stream (`outbound_since`, what the SSE stream reads).

    .venv/bin/python bench/inbox.py [--handoffs 300] [--pg URL] [--json out]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from common import machine as machine_name  # bench/common.py
from common import percentile, scratch_postgres, served
from rich.console import Console
from rich.progress import track
from rich.table import Table

from core.settings import Settings

console = Console()
ADMIN, ALICE, BOB = "bench-admin", "bench-alice", "bench-bob"
SAMPLES = 100


def _ms(values: list[float]) -> tuple[float, float]:
    return round(statistics.median(values), 1), round(percentile(values, 0.95) or 0.0, 1)


def run(database: str, url: str, handoffs: int, data: Path) -> dict[str, Any]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data, database_url=url, brain="rules", workers=1,
        api_keys={ADMIN: ["admin"], ALICE: {"name": "Alice", "scopes": ["inbox"]},
                  BOB: {"name": "Bob", "scopes": ["inbox"]}},
    )
    rng = random.Random(7)
    with served(settings) as (container, base):
        def http(key: str) -> httpx.Client:
            return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"},
                                timeout=60)

        with http(ADMIN) as admin, http(ALICE) as alice, http(BOB) as bob:
            for i in track(range(handoffs), description=f"{database}: {handoffs} handoffs",
                           console=console):
                who = {"web_chat_id": f"wc_bench{i:05d}"}
                for text in ("Can I talk to a person please?", "Hello? Anyone there?",
                             "It is about my invoice"):
                    admin.post("/v1/messages", json={"channel": "web_chat", "customer": who,
                                                     "text": text}).raise_for_status()
            ids = [h["id"] for h in alice.get("/v1/handoffs", params={
                "status": "active", "limit": 500}).json()]
            assert len(ids) == handoffs, len(ids)
            listed, packets, claims, replies = [], [], [], []
            for _ in track(range(SAMPLES), description=f"{database}: list and packet",
                           console=console):
                t0 = time.perf_counter()
                alice.get("/v1/handoffs", params={"status": "active", "limit": 100}
                          ).raise_for_status()
                listed.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                alice.get(f"/v1/handoffs/{rng.choice(ids)}").raise_for_status()
                packets.append((time.perf_counter() - t0) * 1000)
            winners = 0
            for hid in track(ids[:SAMPLES], description=f"{database}: claim races",
                             console=console):
                barrier = threading.Barrier(2)
                codes: list[int] = []

                def claim(client: httpx.Client, hid: str = hid,
                          start: threading.Barrier = barrier, out: list[int] = codes) -> None:
                    start.wait()
                    t0 = time.perf_counter()
                    out.append(client.post(f"/v1/handoffs/{hid}/claim").status_code)
                    claims.append((time.perf_counter() - t0) * 1000)

                threads = [threading.Thread(target=claim, args=(c,)) for c in (alice, bob)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
                if sorted(codes) != [200, 409]:
                    raise RuntimeError(f"claim race on {hid} answered {codes}")
                winners += 1
            store = container.store
            for hid in track(ids[:SAMPLES], description=f"{database}: reply → chat",
                             console=console):
                view = admin.get(f"/v1/handoffs/{hid}").json()["handoff"]
                agent = alice if view["assignee"] == "Alice" else bob
                t0 = time.perf_counter()
                r = agent.post(f"/v1/handoffs/{hid}/reply", json={"text": "On it, checking now."})
                if r.status_code != 201:
                    raise RuntimeError(f"reply refused: {r.status_code} {r.text}")
                message_id = r.json()["body"]["message_id"]
                while message_id not in {m.id for m in store.outbound_since(
                        view["customer_id"], "web_chat", None)}:
                    if time.perf_counter() - t0 > 30:
                        raise RuntimeError("a reply was not delivered within 30 s")
                    time.sleep(0.002)
                replies.append((time.perf_counter() - t0) * 1000)
    return {"database": database, "handoffs": handoffs, "list_ms": _ms(listed),
            "packet_ms": _ms(packets), "claim_ms": _ms(claims), "races": winners,
            "reply_to_chat_ms": _ms(replies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--handoffs", type=int, default=300)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL server; a scratch database is created and dropped.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run("sqlite", f"sqlite:///{tmp}/bench.sqlite", args.handoffs,
                           Path(tmp) / "a"))
        with scratch_postgres(args.pg) as url:
            results.append(run("postgresql", url, args.handoffs, Path(tmp) / "b"))
    table = Table(title=f"the inbox with {args.handoffs} open handoffs on {machine_name()}")
    for col in ("database", "list 100 p50 / p95 ms", "packet p50 / p95 ms",
                "claim p50 / p95 ms", "races with one winner", "reply → chat p50 / p95 ms"):
        table.add_column(col)
    for r in results:
        table.add_row(r["database"], "{} / {}".format(*r["list_ms"]),
                      "{} / {}".format(*r["packet_ms"]), "{} / {}".format(*r["claim_ms"]),
                      f"{r['races']}/{SAMPLES}", "{} / {}".format(*r["reply_to_chat_ms"]))
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_name(), "results": results},
                                        indent=2))


if __name__ == "__main__":
    main()
