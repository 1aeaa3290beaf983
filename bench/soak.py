"""Memory and disk over a long run: `journey serve` for 10,000 turns, its RSS and its data
directory sampled as they go.

`journey serve` runs as a real process on the embedded defaults (SQLite, embedded Chroma, the
worker threads and the relay delivering to the devbox files) against the *instant* model of
``bench/concurrency.py`` (its own process: the model is excluded from the RSS by
construction). ``--conversations`` customers write ``--turns`` turns in all, ``--concurrency``
requests at once; every ``--every`` turns the bench samples the server's resident memory
(``VmRSS`` of its process group, from ``/proc``) and the bytes its data directory holds on
disk (allocated blocks, per part: the journey database, the checkpoints, Chroma, the devbox
outbox files).

The goals (issue 16): RSS at most 500 MiB after 10,000 turns and flat after warm-up (its
growth per 1,000 turns after ``--warmup`` turns, a least-squares slope over the samples), and
at most 20 KB of data directory per turn. The devbox outbox files are what a development
transport writes in place of sending; they are shown but not counted against the goal (a
deployment sends through SMTP, Twilio or a webhook).

    .venv/bin/python bench/soak.py [--turns 10000] [--conversations 1000] [--concurrency 8]
        [--every 500] [--warmup 1000] [--database sqlite|postgres] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psycopg
from common import machine as machine_name  # bench/common.py
from concurrency import (  # bench/concurrency.py
    ERRORS,
    TEXTS,
    _client,
    chroma_server,
    instant_model,
    journey_serve,
    scratch_postgres,
)
from rich.console import Console
from rich.table import Table

from memory.checkpoints import pg_conninfo

RSS_GOAL_MIB = 500
DISK_GOAL_KB = 20


def group_rss_mib(pgid: int) -> float:
    """Resident memory of the live processes in group ``pgid`` (MiB)."""
    kib = 0
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            for line in (status.parent / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kib += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return kib / 1024


def _part(path: Path, root: Path) -> str:
    rel = path.relative_to(root).parts
    if rel[0] == "chroma":
        return "chroma"
    if rel[0] == "outbox":
        return "devbox outbox"
    if rel[0].startswith("checkpoints"):
        return "checkpoints"
    if rel[0].startswith("journey.sqlite"):
        return "journey database"
    return "other"


def disk_bytes(root: Path, chroma: Path | None = None, database_url: str | None = None
               ) -> dict[str, int]:
    """Bytes allocated on disk under ``root``, per part; with a Chroma server, its data
    directory ``chroma``; with PostgreSQL, the database's size (journey tables and checkpoints
    together)."""
    parts: dict[str, int] = {}
    for base in (root, chroma):
        if base is None or not base.exists():
            continue
        for path in base.rglob("*"):
            try:
                if path.is_file() and not path.is_symlink():
                    key = "chroma" if base == chroma else _part(path, root)
                    parts[key] = parts.get(key, 0) + path.stat().st_blocks * 512
            except OSError:
                continue
    if database_url:
        with psycopg.connect(pg_conninfo(database_url)) as conn:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        parts["journey database + checkpoints (PostgreSQL)"] = int(row[0]) if row else 0
    return parts


def slope_per_1000(points: list[tuple[int, float]]) -> float:
    """Least-squares growth of y per 1,000 x."""
    if len(points) < 2:
        return 0.0
    xs, ys = zip(*points, strict=True)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 1000 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def _turns(base: str, total: int, conversations: int, concurrency: int) -> Iterator[int]:
    """Send ``total`` turns (conversation ``i % conversations``), ``concurrency`` at once;
    yields the count done after each one."""
    done = 0
    lock = threading.Lock()
    local = threading.local()

    def one(i: int) -> int:
        nonlocal done
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = _client(base)
        who = f"soak_{i % conversations}"
        body = {"channel": "web_chat", "customer": {"web_chat_id": who},
                "text": f"{TEXTS[i % len(TEXTS)]} ({i})", "external_id": f"{who}-{i}"}
        try:
            response = client.post("/v1/messages", json=body)
            if response.status_code != 200:
                ERRORS.append(f"{response.status_code} {response.text[:200]}")
        except httpx.TransportError as exc:
            ERRORS.append(repr(exc))
        with lock:
            done += 1
            return done

    with ThreadPoolExecutor(concurrency) as pool:
        # a conversation's turns keep their order: turn i is only submitted after turn
        # i - conversations finished (conversations >= concurrency keeps them apart)
        yield from pool.map(one, range(total))


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    data = root / "data"
    with ExitStack() as stack:
        model = stack.enter_context(instant_model())
        settings: dict[str, object] = {
            "JOURNEY_DATA_DIR": data, "JOURNEY_BRAIN": "openai", "JOURNEY_LLM_BASE_URL": model,
            "JOURNEY_LLM_API_KEY": "instant", "JOURNEY_LLM_MODE": "json_schema"}
        database_url = chroma_dir = None
        if args.database == "postgres":
            database_url = stack.enter_context(scratch_postgres("soak"))
            settings["JOURNEY_DATABASE_URL"] = database_url
        if args.database == "postgres" or args.chroma_server:
            settings["JOURNEY_CHROMA_URL"] = stack.enter_context(chroma_server(root / "chroma"))
            chroma_dir = root / "chroma" / "data"
        served = stack.enter_context(journey_serve(settings, root / "serve"))
        samples: list[dict[str, Any]] = []

        def sample(turns: int, elapsed: float) -> None:
            parts = disk_bytes(data, chroma_dir, database_url)
            samples.append({"turns": turns, "seconds": round(elapsed, 1),
                            "rss_mib": round(group_rss_mib(served.pgid), 1),
                            "disk": parts, "errors": len(ERRORS)})
            counted = sum(v for k, v in parts.items() if k != "devbox outbox")
            print(f"{turns:>6} turns  {elapsed:7.1f} s  RSS {samples[-1]['rss_mib']:7.1f} MiB  "
                  f"data {counted / 2**20:8.1f} MiB  errors {len(ERRORS)}", flush=True)

        start = time.perf_counter()
        sample(0, 0.0)
        for done in _turns(served.base, args.turns, args.conversations, args.concurrency):
            if done % args.every == 0 or done == args.turns:
                sample(done, time.perf_counter() - start)
        time.sleep(args.settle)  # the write-behind vectors and the relay catch up
        sample(args.turns, time.perf_counter() - start)
    return summarise(args, samples)


def summarise(args: argparse.Namespace, samples: list[dict[str, Any]]) -> dict[str, Any]:
    def counted(s: dict[str, Any]) -> int:
        return sum(v for k, v in s["disk"].items() if k != "devbox outbox")

    first, last = samples[0], samples[-1]
    warm = [s for s in samples if s["turns"] >= args.warmup]
    per_turn = {part: round((last["disk"].get(part, 0) - first["disk"].get(part, 0))
                            / args.turns / 1000, 2)
                for part in sorted(set(first["disk"]) | set(last["disk"]))}
    return {
        "turns": args.turns, "errors": last["errors"],
        "database": args.database + (" + chroma run" if args.database == "postgres"
                                     or args.chroma_server else ", embedded Chroma"),
        "turns_per_s": round(args.turns / samples[-2]["seconds"], 1),
        "rss_after_warmup_mib": warm[0]["rss_mib"], "rss_end_mib": last["rss_mib"],
        "rss_peak_mib": max(s["rss_mib"] for s in samples),
        "rss_growth_mib_per_1000_after_warmup": round(
            slope_per_1000([(s["turns"], s["rss_mib"]) for s in warm]), 2),
        "disk_kb_per_turn": round((counted(last) - counted(first)) / args.turns / 1000, 2),
        "disk_kb_per_turn_by_part": per_turn,
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--conversations", type=int, default=1000,
                        help="distinct customers; the turns go round them")
    parser.add_argument("--concurrency", type=int, default=8, help="requests at once")
    parser.add_argument("--every", type=int, default=500, help="sample every N turns")
    parser.add_argument("--warmup", type=int, default=1000,
                        help="turns before the RSS should stay flat")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds to wait after the last turn before the last sample")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite",
                        help="sqlite: the embedded defaults; postgres: a scratch database "
                        "and a `chroma run` server (both measured on disk)")
    parser.add_argument("--chroma-server", action="store_true",
                        help="with sqlite: the vectors in a `chroma run` server instead of "
                        "the embedded Chroma (its index then lives in that process)")
    parser.add_argument("--json", type=Path, help="also write the results and samples here")
    args = parser.parse_args()
    if args.conversations < args.concurrency:
        parser.error("--conversations must be at least --concurrency (a conversation's "
                     "turns run one at a time)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args, Path(tmp))
    machine = machine_name()
    table = Table(title=f"{result['turns']:,} turns on {result['database']}, instant model "
                  f"({machine})")
    for col in ("figure", "measured", "goal"):
        table.add_column(col)
    table.add_row("turns/s (mean, with sampling)", str(result["turns_per_s"]), "")
    table.add_row("errors", str(result["errors"]), "0")
    table.add_row(f"RSS after {args.warmup:,} turns (MiB)", str(result["rss_after_warmup_mib"]),
                  "")
    table.add_row("RSS at the end (MiB)", str(result["rss_end_mib"]), f"≤ {RSS_GOAL_MIB}")
    table.add_row("RSS growth per 1,000 turns after warm-up (MiB)",
                  str(result["rss_growth_mib_per_1000_after_warmup"]), "flat")
    table.add_row("data directory per turn (KB, stores)", str(result["disk_kb_per_turn"]),
                  f"≤ {DISK_GOAL_KB}")
    for part, kb in result["disk_kb_per_turn_by_part"].items():
        table.add_row(f"  of which {part}", str(kb), "not counted" if part == "devbox outbox"
                      else "")
    Console(width=160).print(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, **result}, indent=2))


if __name__ == "__main__":
    main()
