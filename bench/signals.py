"""Signals: events ingested per second, and signal → decision latency, on SQLite and PostgreSQL.

Everything runs for real: the API under uvicorn, `POST /v1/events` over HTTP, the worker thread
`journey serve` starts, the journeys, the policy gate, the stores. No model is involved in a
journey decision (its actions are declared), so the latency is the orchestration alone.

- ingest: batches of 100 events (page views, downloads, carts) for 200 customers; events/s;
- latency: for a fresh customer, one `nps_answered` event that fires the `nps_detractor`
  journey (due at once) → the proactive decision recorded by the worker; timed from the
  request to the decision row, median and p95. The baseline it is compared with: Dittofeed
  recomputes segments every 120 s by default, so a signal waits up to 120 s there.

    .venv/bin/python bench/signals.py [--events 2000] [--signals 100] [--pg URL] [--json out]
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
from common import percentile, scratch_postgres, served
from rich.console import Console
from rich.progress import track
from rich.table import Table

from core.settings import Settings

console = Console()
KEY = "bench-key"
DITTOFEED_RECOMPUTE_S = 120.0


def _events(n: int, run: str) -> list[dict[str, Any]]:
    kinds = [("page_view", {"page": "pricing"}), ("page_view", {"page": "docs"}),
             ("content_download", {"asset": "whitepaper"}), ("cart_abandoned", {"value": 80})]
    return [
        {"id": f"{run}-{i}", "type": kinds[i % 4][0], "properties": kinds[i % 4][1],
         "customer": {"email": f"c{i % 200}@{run}.example"}}
        for i in range(n)
    ]


def run(database: str, url: str, events: int, signals: int, data: Path) -> dict[str, Any]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data, database_url=url, brain="rules", workers=1,
        api_keys={KEY: ["admin"]},
    )
    headers = {"Authorization": f"Bearer {KEY}"}
    with served(settings) as (container, base), \
            httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        run_id = f"r{int(time.time())}"
        batch = _events(events, run_id)
        http.post("/v1/events", json={"events": batch[:100]})  # warm-up
        started = time.perf_counter()
        batch_s = []
        for i in track(range(100, events, 100), description=f"{database}: ingest",
                       console=console):
            t0 = time.perf_counter()
            r = http.post("/v1/events", json={"events": batch[i:i + 100]})
            r.raise_for_status()
            batch_s.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        ingested = events - 100
        latencies = []
        store = container.store
        # the ingest fired journeys (pricing surges): let the worker finish them first, so
        # the latency below is one signal's, not a backlog's
        while any(j.due_at <= store.clock.now() for j in
                  store.jobs.list(status="pending", kind="journey", limit=1000)):
            time.sleep(0.1)
        for i in track(range(signals), description=f"{database}: signal → decision",
                       console=console):
            email = f"nps{i}@{run_id}.example"
            t0 = time.perf_counter()
            r = http.post("/v1/events", json={"events": [{
                "id": f"{run_id}-nps-{i}", "type": "nps_answered",
                "properties": {"score": 3}, "customer": {"email": email}}]})
            r.raise_for_status()
            cid = r.json()["results"][0]["customer_id"]
            while not store.decisions(customer_id=cid):
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError("no decision within 30 s")
                time.sleep(0.002)
            latencies.append((time.perf_counter() - t0) * 1000)
    return {
        "database": database,
        "events_per_s": round(ingested / elapsed, 1),
        "batch_ms_p50": round(statistics.median(batch_s) * 1000, 1),
        "batch_ms_p95": round(percentile([b * 1000 for b in batch_s], 0.95) or 0.0, 1),
        "latency_ms_p50": round(statistics.median(latencies), 1),
        "latency_ms_p95": round(percentile(latencies, 0.95) or 0.0, 1),
        "signals": len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--signals", type=int, default=100)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL server; a scratch database is created and dropped.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run("sqlite", f"sqlite:///{tmp}/bench.sqlite", args.events,
                           args.signals, Path(tmp) / "a"))
        with scratch_postgres(args.pg) as url:
            results.append(run("postgresql", url, args.events, args.signals, Path(tmp) / "b"))
    table = Table(title=f"signals on {machine_name()}")
    for col in ("database", "events/s", "batch of 100 p50/p95 ms",
                "signal → decision p50 ms", "p95 ms", "vs Dittofeed 120 s"):
        table.add_column(col)
    for r in results:
        table.add_row(r["database"], str(r["events_per_s"]),
                      f"{r['batch_ms_p50']} / {r['batch_ms_p95']}",
                      str(r["latency_ms_p50"]), str(r["latency_ms_p95"]),
                      f"{DITTOFEED_RECOMPUTE_S * 1000 / r['latency_ms_p95']:.0f}× sooner")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_name(), "results": results},
                                        indent=2))


if __name__ == "__main__":
    main()
