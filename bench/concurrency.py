"""Concurrent conversations against the real server: turns/s and latency, 50 at once vs one
after another, on SQLite and PostgreSQL.

`journey serve` runs as a real process (uvicorn, its worker thread, the LLM brain) against an
*instant* model: a chat-completions server in its own process that answers a valid decision at
once, so what is measured is the server around the model. Each database gets a fresh store.
In the same run, on the same server:

- sequential: ``--seq`` turns, one request at a time (each a different conversation);
- concurrent: ``--conversations`` conversations at once, ``--turns`` turns each (a
  conversation's turns one after another, as a person writes).

The ratio is concurrent turns/s ÷ sequential turns/s. Each database runs with
``JOURNEY_MAX_CONCURRENT_TURNS=64`` (above the 40-thread pool: no limit in effect, the baseline)
and with the default limit (``--limits``). ``--serve-workers N`` adds ``journey serve --workers
N`` on PostgreSQL and a ``chroma run`` server; ``--saver-experiment`` adds each database with
the checkpoint savers' lock removed in the served process (:func:`unlock_savers`). The server's
CPU time per turn and the cores it kept busy come from ``/proc`` (its process group only).

    .venv/bin/python bench/concurrency.py [--conversations 50] [--turns 4] [--seq 100]
        [--databases sqlite,postgres] [--limits 64,0] [--serve-workers 2]
        [--saver-experiment] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import common
import httpx
from common import machine as machine_name  # bench/common.py
from common import percentile
from rich.console import Console
from rich.table import Table
from turn_overhead import DECISION, TEXTS  # bench/turn_overhead.py

BIN = Path(sys.executable).parent
PG_SERVER = os.environ.get("JOURNEY_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
KEY = "bench-admin"
COMPLETION = json.dumps({
    "id": "bench", "object": "chat.completion", "created": 0, "model": "instant",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": json.dumps(DECISION)}}],
    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
}).encode()


# --------------------------------------------------------------------------- the instant model


class _InstantModel(BaseHTTPRequestHandler):
    """POST: DECISION at once; GET: how many completions it answered (a turn run twice calls
    the model twice)."""

    protocol_version = "HTTP/1.1"  # keep-alive: the brain's client reuses its connection
    calls = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            type(self).calls += 1
        self._send(COMPLETION)

    def do_GET(self) -> None:
        self._send(json.dumps({"calls": type(self).calls}).encode())

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        """Quiet."""


def serve_instant_model(port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), _InstantModel)
    server.daemon_threads = True
    server.serve_forever()


def model_calls(base_url: str) -> int:
    """How many completions the instant model at ``base_url`` answered so far."""
    return int(httpx.get(f"{base_url}/calls", timeout=10).json()["calls"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def instant_model() -> Iterator[str]:
    """A chat-completions server in its own process answering DECISION at once: its base URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--instant-model", str(port)],
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait(lambda: _connects(port), 30, "the instant model")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(proc)


# --------------------------------------------------------------------------- processes


def _connects(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(check: Any, deadline_s: float, what: str, proc: subprocess.Popen[bytes] | None = None,
          log: Path | None = None) -> None:
    deadline = time.monotonic() + deadline_s
    while not check():
        if proc is not None and proc.poll() is not None:
            text = log.read_text(errors="replace") if log else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}\n{text[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up in {deadline_s:g} s")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def journey_env(settings: Mapping[str, object]) -> dict[str, str]:
    """This environment without any JOURNEY_* variable, plus ``settings`` (the abuse limits
    off: a bench sends thousands of requests from one address with one key)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEY_")}
    env.update({"PYTHONUNBUFFERED": "1", "COLUMNS": "200", "NO_COLOR": "1",
                "ORT_DISABLE_TELEMETRY": "1", "ANONYMIZED_TELEMETRY": "False",
                "JOURNEY_API_KEYS": json.dumps({KEY: ["admin"]}),
                "JOURNEY_RATE_LIMIT_LOGIN": "", "JOURNEY_RATE_LIMIT_WEBCHAT_SESSIONS": "",
                "JOURNEY_RATE_LIMIT_WEBCHAT_MESSAGES": "", "JOURNEY_RATE_LIMIT_API": ""})
    env.update({k: str(v) for k, v in settings.items()})
    return env


@contextmanager
def journey_process(args: list[str], settings: Mapping[str, object], home: Path,
                    ready: str | None = None,
                    journey: list[str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``journey ARGS`` in its own session, cwd ``home`` (no .env leaks in), output in
    ``home/output.log``; waits until the log shows ``ready`` (if given). ``journey``: the
    command to run instead of the installed one."""
    home.mkdir(parents=True, exist_ok=True)
    log = home / "output.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*(journey or [str(BIN / "journey")]), *args], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=journey_env(settings), cwd=home, start_new_session=True)
    try:
        if ready:
            _wait(lambda: ready in log.read_text(errors="replace"), 180, f"journey {args[0]}",
                  proc, log)
        yield proc
    finally:
        _stop(proc)


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/v1/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


class Served(NamedTuple):
    base: str
    #: the process group: `journey serve` and its uvicorn workers
    pgid: int


@contextmanager
def journey_serve(settings: Mapping[str, object], home: Path, workers: int = 1,
                  saver_unlocked: bool = False) -> Iterator[Served]:
    """``journey serve [--workers N]`` on a free port until ``/v1/health`` answers
    (``saver_unlocked``: with the experiment :func:`unlock_savers` applied first)."""
    port = free_port()
    args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        args += ["--workers", str(workers)]
    patched = [sys.executable, __file__, "--unlocked-journey"] if saver_unlocked else None
    with journey_process(args, settings, home, journey=patched) as proc:
        base = f"http://127.0.0.1:{port}"
        _wait(lambda: _healthy(base), 180, "journey serve", proc, home / "output.log")
        yield Served(base, proc.pid)


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of group ``pgid``."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def chroma_server(root: Path) -> Iterator[str]:
    """A ``chroma run`` server on loopback with its own data directory: its URL."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    log = root / "chroma.log"
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "chroma"), "run", "--path", str(root / "data"), "--host", "127.0.0.1",
             "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def beating() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    try:
        _wait(beating, 60, "chroma run", proc, log)
        yield url
    finally:
        _stop(proc)


def scratch_postgres(tag: str) -> AbstractContextManager[str]:
    """A fresh database ``jo_scale_<tag>_<random>`` on the bench's server, dropped afterwards."""
    return common.scratch_postgres(PG_SERVER, f"scale_{tag}")


# --------------------------------------------------------------------------- the experiment


def unlock_savers() -> None:
    """An experiment, not the product: the checkpoint savers without their instance-wide lock.

    ``PostgresSaver`` over a connection pool takes a connection per call, yet holds one
    ``threading.Lock`` around every call; here the lock is a no-op when it has a pool.
    ``SqliteSaver`` shares one connection under its lock; here each thread gets its own
    connection to the same file (WAL; SQLite still serialises the writes, with its busy
    timeout) and the lock is a no-op."""
    import sqlite3
    from contextlib import nullcontext

    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.checkpoint.sqlite import SqliteSaver
    from psycopg_pool import ConnectionPool

    pg_init = PostgresSaver.__init__

    def postgres_init(self: Any, conn: Any, *args: Any, **kwargs: Any) -> None:
        pg_init(self, conn, *args, **kwargs)
        if isinstance(conn, ConnectionPool):
            self.lock = nullcontext()

    local = threading.local()

    def get_conn(self: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        return conn

    def set_conn(self: Any, conn: sqlite3.Connection) -> None:
        self.path = conn.execute("PRAGMA database_list").fetchone()[2]
        local.conn = conn

    sqlite_init = SqliteSaver.__init__

    def sqlite_saver_init(self: Any, *args: Any, **kwargs: Any) -> None:
        sqlite_init(self, *args, **kwargs)
        self.lock = nullcontext()

    PostgresSaver.__init__ = postgres_init  # type: ignore[method-assign]
    SqliteSaver.conn = property(get_conn, set_conn)  # type: ignore[assignment]
    SqliteSaver.__init__ = sqlite_saver_init  # type: ignore[method-assign]


# --------------------------------------------------------------------------- the load


#: requests that did not answer 200 (status and the start of the body), per run
ERRORS: list[str] = []
#: every error seen in the run
SEEN: list[str] = []


def _turn(client: httpx.Client, who: str, i: int) -> float:
    body = {"channel": "web_chat", "customer": {"web_chat_id": who},
            "text": f"{TEXTS[i % len(TEXTS)]} ({i})", "external_id": f"{who}-{i}"}
    start = time.perf_counter()
    try:
        response = client.post("/v1/messages", json=body)
    except httpx.TransportError as exc:
        ERRORS.append(repr(exc))
        return (time.perf_counter() - start) * 1000
    elapsed = (time.perf_counter() - start) * 1000
    if response.status_code != 200:
        ERRORS.append(f"{response.status_code} {response.text[:200]}")
        return elapsed
    brain = response.json()["decision"]["brain"]
    if brain.get("fallback_reason") or not brain.get("llm_calls"):
        raise RuntimeError(f"the instant model did not decide: {brain}")
    return elapsed


def _client(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=300)


def sequential(served: Served, turns: int, tag: str) -> dict[str, Any]:
    times: list[float] = []
    with _client(served.base) as client:
        cpu = group_cpu_s(served.pgid)
        start = time.perf_counter()
        for i in range(turns):
            times.append(_turn(client, f"{tag}_seq_{i}", i))
        wall = time.perf_counter() - start
    return _figures("sequential", times, wall, group_cpu_s(served.pgid) - cpu)


def concurrent(served: Served, conversations: int, turns: int, tag: str) -> dict[str, Any]:
    go = threading.Barrier(conversations + 1)

    def person(c: int) -> list[float]:
        with _client(served.base) as client:
            go.wait()
            return [_turn(client, f"{tag}_con_{c}", i) for i in range(turns)]

    with ThreadPoolExecutor(conversations) as pool:
        futures = [pool.submit(person, c) for c in range(conversations)]
        cpu = group_cpu_s(served.pgid)
        go.wait()
        start = time.perf_counter()
        times = [t for future in futures for t in future.result()]
        wall = time.perf_counter() - start
    return _figures(f"{conversations} concurrent", times, wall, group_cpu_s(served.pgid) - cpu)


def _figures(mode: str, times: list[float], wall: float, cpu_s: float) -> dict[str, Any]:
    errors = len(ERRORS)
    SEEN.extend(ERRORS)
    ERRORS.clear()
    return {"mode": mode, "turns": len(times), "errors": errors,
            "turns_per_s": round((len(times) - errors) / wall, 1),
            "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(percentile(times, 0.95) or 0.0, 1),
            # the server's processes only (not PostgreSQL, Chroma or the model)
            "server_cpu_ms_per_turn": round(cpu_s * 1000 / len(times), 1),
            "server_cores": round(cpu_s / wall, 2)}


def run(database: str, model: str, args: argparse.Namespace, root: Path,
        serve_workers: int = 1, saver_unlocked: bool = False,
        max_turns: int | None = None) -> list[dict[str, Any]]:
    variant = ("-unlocked" if saver_unlocked else "") + (f"-max{max_turns}" if max_turns else "")

    @contextmanager
    def stores() -> Iterator[dict[str, object]]:
        if database == "sqlite":
            yield {"JOURNEY_DATA_DIR": root / f"{database}{variant}-data"}
            return
        with scratch_postgres(f"c{serve_workers}") as url, \
                chroma_server(root / f"chroma-{serve_workers}{variant}") as chroma:
            yield {"JOURNEY_DATA_DIR": root / f"pg{serve_workers}{variant}-data",
                   "JOURNEY_DATABASE_URL": url, "JOURNEY_CHROMA_URL": chroma}

    with stores() as where:
        settings = {**where, "JOURNEY_BRAIN": "openai", "JOURNEY_LLM_BASE_URL": model,
                    "JOURNEY_LLM_API_KEY": "instant", "JOURNEY_LLM_MODE": "json_schema"}
        if max_turns:
            settings["JOURNEY_MAX_CONCURRENT_TURNS"] = max_turns
        home = root / f"serve-{database}-{serve_workers}{variant}"
        with journey_serve(settings, home, serve_workers, saver_unlocked) as served:
            tag = f"{database}{serve_workers}{variant}"
            sequential(served, args.warmup, tag + "w")  # warm-up: model, caches, connections
            concurrent(served, min(args.conversations, 10), 2, tag + "w")
            rows = [sequential(served, args.seq, tag),
                    concurrent(served, args.conversations, args.turns, tag)]
        if any(row["errors"] for row in rows):  # what the server said about them
            print(f"--- {database}: the errors: {sorted(set(SEEN))[:5]}", file=sys.stderr)
            log = (home / "output.log").read_text(errors="replace")
            kept = Path(tempfile.gettempdir()) / f"jo16-concurrency-{home.name}.log"
            kept.write_text(log)
            raised = sorted({line for line in log.splitlines()
                             if re.match(r"^[\w.]+(Error|Exception|Timeout)\b", line)})
            print(f"--- {database}: what the server raised (its log: {kept}) ---\n"
                  + "\n".join(raised[:10]), file=sys.stderr)
    label = database if database == "sqlite" else (
        "postgres + chroma run" + (f", serve --workers {serve_workers}"
                                   if serve_workers > 1 else ""))
    label += f", max {max_turns} turns at once" if max_turns else ", default max turns"
    for row in rows:
        row["database"] = label + (" (experiment: savers unlocked)" if saver_unlocked else "")
    rows[1]["ratio"] = round(rows[1]["turns_per_s"] / rows[0]["turns_per_s"], 2)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--turns", type=int, default=4, help="turns per concurrent conversation")
    parser.add_argument("--seq", type=int, default=100, help="sequential turns")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--serve-workers", type=int, default=0,
                        help="also run `journey serve --workers N` on PostgreSQL (0: no)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--limits", default="64,0",
                        help="JOURNEY_MAX_CONCURRENT_TURNS values to run, comma-separated "
                        "(64: no limit in effect, as before it existed; 0: the default)")
    parser.add_argument("--saver-experiment", action="store_true",
                        help="also run each database with the checkpoint savers unlocked "
                        "(unlock_savers: an experiment, not the product)")
    parser.add_argument("--instant-model", type=int, help=argparse.SUPPRESS)
    if sys.argv[1:2] == ["--unlocked-journey"]:  # `journey ARGS` with the experiment applied
        from cli import main as journey_main

        unlock_savers()
        sys.argv = ["journey", *sys.argv[2:]]
        journey_main()
        return
    args = parser.parse_args()
    if args.instant_model:
        serve_instant_model(args.instant_model)
        return
    # a stopped run still stops its processes and drops its database
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    limits = [int(x) or None for x in args.limits.split(",")]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, instant_model() as model:
        for database in args.databases.split(","):
            for limit in limits:
                results += run(database, model, args, Path(tmp), max_turns=limit)
            if args.saver_experiment:
                results += run(database, model, args, Path(tmp), saver_unlocked=True)
        if args.serve_workers > 1:
            results += run("postgres", model, args, Path(tmp), args.serve_workers)
    machine = machine_name()
    table = Table(title=f"Concurrent conversations, instant model ({machine})")
    for col in ("server", "mode", "turns", "errors", "turns/s", "p50 ms", "p95 ms",
                "÷ sequential", "server CPU ms/turn", "server cores busy"):
        table.add_column(col)
    for r in results:
        table.add_row(r["database"], r["mode"], str(r["turns"]), str(r["errors"]),
                      str(r["turns_per_s"]),
                      str(r["p50_ms"]), str(r["p95_ms"]),
                      f"{r['ratio']}×" if "ratio" in r else "1×",
                      str(r["server_cpu_ms_per_turn"]), str(r["server_cores"]))
    Console(width=200).print(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
