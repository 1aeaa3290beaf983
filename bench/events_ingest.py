"""Events ingested at storage speed: `POST /v1/events` in batches of 1,000, on SQLite and
PostgreSQL, beside a plain `executemany` of the same rows into the events table (same run,
same database).

Everything runs for real: the API under uvicorn, the batches over HTTP, the journeys, the
lifecycle rules, the stores. The events are a mix (pricing and docs page views, downloads,
carts, a trait now and then) for ``--customers`` customers, so the batches move intent scores
and stages, fire journeys (pricing surges, nurtures) and cancel jobs as real traffic does.

- set-based: the batch path (one transaction per batch, the reads and writes in bulk);
- per event: the path before it (``SignalService.batched = False``: 5 transactions and 9
  statements per event), for ``--old-batches`` batches only (it is ~100× slower);
- executemany: the same number of rows inserted into ``events`` with one ``executemany`` per
  batch of 1,000, in one transaction — what storage alone costs.

    .venv/bin/python bench/events_ingest.py [--batches 10] [--old-batches 1] [--customers 200]
        [--pg URL] [--json out]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from common import machine as machine_name  # bench/common.py
from common import percentile, scratch_postgres, served
from rich.console import Console
from rich.table import Table
from sqlalchemy import insert

from core.settings import Settings
from memory import db

console = Console()
KEY = "bench-key"
BATCH = 1000


def _batch(run: str, n: int, customers: int) -> list[dict[str, Any]]:
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("page_view", {"page": "pricing"}), ("page_view", {"page": "docs"}),
        ("content_download", {"asset": "whitepaper"}), ("cart_abandoned", {"value": 80}),
        ("page_view", {"page": "home"}),
    ]
    out = []
    for i in range(BATCH):
        kind, props = kinds[i % len(kinds)]
        event: dict[str, Any] = {
            "id": f"{run}-{n}-{i}", "type": kind, "properties": props,
            "customer": {"email": f"c{(i * 7 + n) % customers}@{run}.example"}}
        if i % 50 == 0:
            event["traits"] = {"company_size": 10 + i % 7}
        out.append(event)
    return out


def _rates(batch_s: list[float]) -> dict[str, float]:
    median = statistics.median(batch_s)
    p95 = percentile(batch_s, 0.95) or median
    return {"batches": len(batch_s), "batch_ms_p50": round(median * 1000, 1),
            "batch_ms_p95": round(p95 * 1000, 1),
            "events_per_s_p50": round(BATCH / median), "events_per_s_p95": round(BATCH / p95),
            # each batch adds 5 events per customer, all within the rules' windows
            "batch_ms_first": round(batch_s[0] * 1000, 1),
            "batch_ms_last": round(batch_s[-1] * 1000, 1)}


def run(database: str, url: str, batches: int, old_batches: int, customers: int,
        data: Path) -> dict[str, Any]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data, database_url=url, brain="rules", workers=0,
        api_keys={KEY: ["admin"]},
    )
    headers = {"Authorization": f"Bearer {KEY}"}
    out: dict[str, Any] = {"database": database}
    with served(settings) as (container, base), \
            httpx.Client(base_url=base, headers=headers, timeout=600) as http:
        signals = container.signals
        assert signals is not None
        run_id = f"r{int(time.time())}"

        def post(n: int) -> float:
            body = {"events": _batch(run_id, n, customers)}
            t0 = time.perf_counter()
            r = http.post("/v1/events", json=body)
            elapsed = time.perf_counter() - t0
            r.raise_for_status()
            assert r.json()["accepted"] == BATCH, r.text[:500]
            return elapsed

        post(0)  # warm-up: creates the customers
        console.print(f"{database}: set-based, {batches} batches of {BATCH}")
        out["set_based"] = _rates([post(n) for n in range(1, batches + 1)])
        signals.batched = False
        console.print(f"{database}: per event (the old path), {old_batches} batches")
        try:
            out["per_event"] = _rates([post(n) for n in
                                       range(batches + 1, batches + 1 + old_batches)])
        finally:
            signals.batched = True
        # the same rows, straight into the table
        store = container.store
        owner = {c.id for c in store.list_customers(limit=customers)}
        cids = sorted(owner)
        now = datetime.now(UTC)
        raw_s = []
        for n in range(batches):
            rows = [{"id": f"{run_id}-raw-{n}-{e['id']}", "customer_id": cids[i % len(cids)],
                     "type": e["type"], "properties": e["properties"],
                     "occurred_at": now - timedelta(seconds=i)}
                    for i, e in enumerate(_batch(run_id, n, customers))]
            t0 = time.perf_counter()
            with store.engine.begin() as conn:
                conn.execute(insert(db.events), rows)
            raw_s.append(time.perf_counter() - t0)
        out["executemany"] = _rates(raw_s)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--old-batches", type=int, default=1)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL server; a scratch database is created and dropped.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "postgresql":
            results.append(run("sqlite", f"sqlite:///{tmp}/bench.sqlite", args.batches,
                               args.old_batches, args.customers, Path(tmp) / "a"))
        if args.only != "sqlite":
            with scratch_postgres(args.pg, "ingest") as url:
                results.append(run("postgresql", url, args.batches, args.old_batches,
                                   args.customers, Path(tmp) / "b"))
    table = Table(title=f"events ingested, batches of {BATCH}, {args.customers} customers, "
                        f"on {machine_name()}")
    for col in ("database", "path", "batches", "events/s p50", "events/s at p95 batch",
                "batch ms p50 / p95", "vs executemany (p50)"):
        table.add_column(col)
    for r in results:
        raw = r["executemany"]["events_per_s_p50"]
        for path in ("set_based", "per_event", "executemany"):
            f = r[path]
            table.add_row(r["database"], path.replace("_", "-"), str(f["batches"]),
                          str(f["events_per_s_p50"]), str(f["events_per_s_p95"]),
                          f"{f['batch_ms_p50']} / {f['batch_ms_p95']}",
                          f"{f['events_per_s_p50'] / raw:.3f}×")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_name(), "results": results},
                                        indent=2))


if __name__ == "__main__":
    main()
