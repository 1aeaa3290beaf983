"""Bulk import of customers: `journey customers import` on 100k synthetic profiles, on SQLite
and PostgreSQL, each into a fresh database.

The rows (seeded) carry what a company's export does: an email and a phone (written the way
people write them, normalised on the way in), a name, timezone, locale, stage, three
attributes, and consent on email (marketing, with source, time and evidence) and SMS (service).
About 1% of the rows name a person already named (an update of the same profile), 0.1% are
leads known by a phone only and 0.1% then say whose phone it is (a merge of two profiles, which
takes the per-row path), 0.5% are invalid (refused and reported). The file contradicts itself
nowhere, so a re-run must change nothing.

Measured, each as the real command in a child process (wall time from start to exit, process
start-up included; the child's peak RSS):

- import: the CSV into an empty database;
- re-run: the same file again (it must change nothing);
- export: every profile back out as JSON Lines;

and, in this process, two baselines on the same rows: a plain ``executemany`` of the valid
profiles (customers, identities, ledger rows; no validation, no lookups) into another empty
database, the floor any import pays; and ``CustomerService.upsert`` one request at a time
(the profile API's path) on the first ``--upserts`` rows, extrapolated.

    .venv/bin/python bench/customers_import.py [--rows 100000] [--databases sqlite,postgresql]
                                               [--pg URL] [--json out]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import machine as machine_name  # bench/common.py
from common import scratch_postgres
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, insert, select

from journey.bulk import csv_cells, csv_columns
from journey.customers import CustomerService, ProfileRequest
from memory import db, migrate
from memory.db import make_engine
from memory.store import Store
from policy.lifecycle import load_lifecycle

console = Console()
JOURNEY = Path(sys.executable).with_name("journey")
ZONES = ["America/New_York", "America/Los_Angeles", "Europe/London", "Europe/Paris",
         "Asia/Tokyo", "America/Sao_Paulo", "Australia/Sydney"]
LOCALES = ["en-US", "en-GB", "fr-FR", "pt-BR", "ja-JP", "de-DE"]
STAGES = ["awareness", "consideration", "decision", "retention"]
PLANS = ["Starter", "Growth", "Scale"]


def synthetic(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` rows as ``PUT /v1/customers`` bodies (see the module's docstring)."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    people = 0
    leads: list[tuple[int, str]] = []  # (person, a phone they left elsewhere)
    lead_count = 0
    for _ in range(n):
        roll = rng.random()
        if people > 2 and roll < 0.01:  # the same person again, with a field more
            i = rng.randrange(people)
            rows.append({"identities": {"email": f"Person.{i}@Example.com"},
                         "attributes": {"last_order": f"o-{i}"}})
            continue
        if people > 2 and roll < 0.011:  # a lead known by phone only: a profile of its own
            i, phone = rng.randrange(people), f"+1 646 555 {lead_count:04d}"
            lead_count += 1
            leads.append((i, phone))
            rows.append({"identities": {"phone": phone}, "attributes": {"source": "ads"}})
            continue
        if leads and roll < 0.012:  # ... then a row says whose phone it is: a merge
            i, phone = leads.pop(0)
            rows.append({"identities": {"email": f"person.{i}@example.com", "phone": phone}})
            continue
        if roll < 0.017:  # invalid: refused and reported
            rows.append({"identities": {"email": f"broken.{len(rows)}@@example"},
                         "timezone": "Mars/Olympus"})
            continue
        i = people
        people += 1
        at = start + timedelta(minutes=rng.randrange(300_000))
        rows.append({
            "identities": {"email": f"person.{i}@example.com",
                           "phone": f"+1 (212) {i // 10000:03d}-{i % 10000:04d}"},
            "name": f"Person {i}",
            "timezone": rng.choice(ZONES),
            "locale": rng.choice(LOCALES),
            "lifecycle_stage": rng.choice(STAGES),
            "attributes": {"plan": rng.choice(PLANS), "seats": rng.randint(1, 500),
                           "signup_year": rng.randint(2015, 2026)},
            "consent": {
                "email": {"marketing": {
                    "status": rng.choice(["granted", "revoked"]), "source": "signup-form",
                    "at": at.isoformat(), "evidence": "https://example.com/signup v3"}},
                "sms": {"service": {"status": "granted", "source": "checkout",
                                    "at": at.isoformat()}},
            },
        })
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    columns = csv_columns({"plan", "seats", "signup_year", "last_order", "source"},
                          {("email", "marketing"), ("sms", "service")})
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(csv_cells(row))


def journey(args: list[str], url: str, data: Path, ok: tuple[int, ...] = (0,)) -> dict[str, Any]:
    """Run ``journey ARGS`` against ``url``: wall seconds, peak RSS (MiB), its output.

    The peak is the child's own high-water mark (``VmHWM``), read until it exits: its
    ``ru_maxrss`` would count the pages of this process it was forked from."""
    env = {**os.environ, "JOURNEY_DATABASE_URL": url, "JOURNEY_DATA_DIR": str(data),
           "COLUMNS": "200", "ORT_DISABLE_TELEMETRY": "1"}
    data.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        child = subprocess.Popen([str(JOURNEY), *args], env=env, stdout=out, stderr=out,
                                 text=True)
        peak_kib = 0
        while child.poll() is None:
            try:
                status = Path(f"/proc/{child.pid}/status").read_text()
                peak_kib = int(status.split("VmHWM:")[1].split()[0])
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        out.seek(0)
        output = out.read()
    if child.returncode not in ok:
        raise RuntimeError(f"journey {' '.join(args)} failed ({child.returncode}): {output}")
    summary = next((line for line in output.splitlines() if " rows: " in line
                    or line.startswith("exported ")), "")
    return {"s": elapsed, "rss_mib": peak_kib / 1024, "out": summary}


def counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    with engine.connect() as conn:
        out = {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
               for t in (db.customers, db.identities, db.consent_events, db.profile_merges)}
        out["last_update"] = hash(conn.execute(
            select(func.max(db.customers.c.updated_at))).scalar_one())
    engine.dispose()
    return out


def executemany_baseline(rows: list[dict[str, Any]], url: str) -> float:
    """The valid, distinct profiles written with one ``executemany`` per table per 1,000."""
    engine = make_engine(url)
    migrate.upgrade(engine)
    now = datetime.now(UTC)
    profiles = [r for r in rows if "name" in r]
    started = time.perf_counter()
    for start in range(0, len(profiles), 1000):
        customers, identities, ledger = [], [], []
        for n, r in enumerate(profiles[start:start + 1000], start):
            cid = f"cus_{n:08d}"
            customers.append({
                "id": cid, "name": r["name"], "lifecycle_stage": r["lifecycle_stage"],
                "timezone": r["timezone"], "locale": r["locale"], "channel_preference": None,
                "attributes": r["attributes"],
                "consent": {ch: {p: g["status"] for p, g in ps.items()}
                            for ch, ps in r["consent"].items()},
                "created_at": now, "updated_at": now})
            identities += [{"customer_id": cid, "kind": k, "value": v}
                           for k, v in r["identities"].items()]
            ledger += [{"customer_id": cid, "channel": ch, "purpose": p, "previous": "unknown",
                        "status": g["status"], "source": g["source"], "by": "bench",
                        "evidence": g.get("evidence"), "at": datetime.fromisoformat(g["at"]),
                        "created_at": now}
                       for ch, ps in r["consent"].items() for p, g in ps.items()]
        with engine.begin() as conn:
            conn.execute(insert(db.customers), customers)
            conn.execute(insert(db.identities), identities)
            conn.execute(insert(db.consent_events), ledger)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def upsert_rate(rows: list[dict[str, Any]], url: str, n: int) -> float:
    """Rows per second through ``CustomerService.upsert``, one request at a time."""
    engine = make_engine(url)
    migrate.upgrade(engine)
    service = CustomerService(Store(engine), load_lifecycle())
    requests = [ProfileRequest.model_validate(r) for r in rows[:n] if "name" in r]
    started = time.perf_counter()
    for request in requests:
        service.upsert(request, by="bench")
    elapsed = time.perf_counter() - started
    engine.dispose()
    return len(requests) / elapsed


def run(database: str, urls: list[str], csv_path: Path, rows: list[dict[str, Any]],
        data: Path, upserts: int) -> dict[str, Any]:
    url, baseline_url, upsert_url = urls
    console.print(f"[bold]{database}[/]: import of {len(rows):,} rows …")
    # exit status 1: some rows were refused, as planned
    first = journey(["customers", "import", str(csv_path), "--by", "bench"], url, data, (0, 1))
    after_first = counts(url)
    console.print(f"  {first['out']}")
    console.print(f"[bold]{database}[/]: the same file again …")
    again = journey(["customers", "import", str(csv_path), "--by", "bench"], url, data, (0, 1))
    console.print(f"  {again['out']}")
    unchanged = counts(url) == after_first
    console.print(f"[bold]{database}[/]: export …")
    exported = journey(["customers", "export", "-o", str(data / "export.jsonl")], url, data)
    console.print(f"  {exported['out']}")
    console.print(f"[bold]{database}[/]: baselines …")
    baseline_s = executemany_baseline(rows, baseline_url)
    upsert_per_s = upsert_rate(rows, upsert_url, upserts)
    result = {
        "database": database, "rows": len(rows),
        "import_s": round(first["s"], 1), "rows_per_s": round(len(rows) / first["s"]),
        "import_rss_mib": round(first["rss_mib"]), "import_summary": first["out"],
        "rerun_s": round(again["s"], 1), "rerun_rss_mib": round(again["rss_mib"]),
        "rerun_changed_nothing": unchanged, "rerun_summary": again["out"],
        "export_s": round(exported["s"], 1), "export_rss_mib": round(exported["rss_mib"]),
        "stored": after_first,
        "executemany_s": round(baseline_s, 1),
        "import_vs_executemany": round(first["s"] / baseline_s, 1),
        "upsert_rows_per_s": round(upsert_per_s),
        "upsert_100k_s_estimated": round(len(rows) / upsert_per_s),
    }
    console.print_json(data=result, default=str)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--upserts", type=int, default=2000,
                        help="rows for the per-row upsert baseline")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL server; scratch databases are created and dropped.")
    parser.add_argument("--databases", default="sqlite,postgresql",
                        help="which of sqlite, postgresql to run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = synthetic(args.rows, args.seed)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "customers.csv"
        write_csv(rows, csv_path)
        console.print(f"{len(rows):,} rows, {csv_path.stat().st_size / 1e6:.1f} MB of CSV")
        sqlite = [f"sqlite:///{tmp}/{name}.sqlite" for name in ("import", "base", "upsert")]
        if "sqlite" in args.databases:
            results.append(run("sqlite", sqlite, csv_path, rows, Path(tmp) / "a", args.upserts))
        if "postgresql" in args.databases:
            with scratch_postgres(args.pg, "bench_import") as a, \
                    scratch_postgres(args.pg, "bench_base") as b, \
                    scratch_postgres(args.pg, "bench_upsert") as c:
                results.append(run("postgresql", [a, b, c], csv_path, rows, Path(tmp) / "b",
                                   args.upserts))
    table = Table(title=f"customers import, {args.rows:,} rows, on {machine_name()}")
    for col in ("database", "import", "rows/s", "peak RSS", "re-run (no change)", "export",
                "executemany baseline", "import ÷ baseline", "upsert one by one (est.)"):
        table.add_column(col)
    for r in results:
        table.add_row(
            r["database"], f"{r['import_s']} s", f"{r['rows_per_s']:,}",
            f"{r['import_rss_mib']} MiB",
            f"{r['rerun_s']} s ({'unchanged' if r['rerun_changed_nothing'] else 'CHANGED'})",
            f"{r['export_s']} s, {r['export_rss_mib']} MiB", f"{r['executemany_s']} s",
            f"{r['import_vs_executemany']}×",
            f"{r['upsert_rows_per_s']}/s ≈ {r['upsert_100k_s_estimated'] / 60:.0f} min")
    Console(width=180).print(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_name(), "results": results},
                                        indent=2, default=str))


if __name__ == "__main__":
    main()
