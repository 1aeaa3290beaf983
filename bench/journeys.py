"""Journeys with steps at scale: enrol and step N customers (10,000 by default) through a
multi-step journey, on SQLite or PostgreSQL, beside the same customers on a one-step journey.

Everything runs for real: the container ``journey serve`` builds (rules brain, embedded
Chroma, the default policy), the API under uvicorn with events posted over HTTP
(``POST /v1/events``, batches of ``--batch``), ``container.make_workers(k)`` worker threads
(enrol, step, the agent's proactive turn through the policy gate, the outbox relay), and the
real SMTP adapter delivering every email to an SMTP server (aiosmtpd) in a child process, as
a real mail relay would be. Only the clock is simulated (``core.clock.FixedClock``): a
one-day wait takes no wall time; the bench moves the clock between phases.

The journey (``guide_followup``): a ``content_download`` enrols the customer; 10% are held
out (deterministic by customer, they get nothing and exit at once, their conversions still
count); the rest wait a day, then a branch on the ``purchase`` intent score sends the keen
ones (two pricing page views, ``--keen`` of the customers) to sales (an escalation) and the
others a nurture email; then ``wait_until`` a ``checkout_completed`` (the goal: within 14 days
of entering), else they exit on the timeout. The baseline (``guide_once``, a fresh database):
the same events on a one-step journey, the same email sent a day after the download.

Phases (the worker threads are started for each phase and stopped after it, so phases do not
overlap; the events are posted while no worker runs):

1. customers: N profiles with email marketing consent, through the bulk importer (setup);
2. ingest: the downloads (and the keen customers' page views) over HTTP; events/s;
3. enrol: the workers enrol everyone and put each treatment enrolment on its one-day wait;
4. day 1: the clock moves a day; the workers run the wait, the branch, the send or the
   escalation, and put each one on its goal wait; the relay delivers the emails over SMTP;
5. checkouts: the clock moves to day 3; ``--buyers`` of the customers (seeded) post a
   ``checkout_completed`` over HTTP (the goals are counted and the waits woken as the events
   are accepted); then the workers end the woken enrolments on their goal;
6. timeout: the clock moves past the goal window; the workers end every enrolment left;
7. late: ``--late`` of the customers post a checkout after the window (it must not count).

Throughput is the phase's work over its wall time, from the moment its jobs are all due and
the workers start (t0) to the last piece of the phase's work committed (not to when the bench
noticed: it polls every 0.2 s).

Each phase also counts, per enrolment, the SQL statements, commits and connection checkouts
on the store's engine (SQLAlchemy events; on PostgreSQL each checkout is also a ``pool_pre_ping``
round trip) and this process's CPU time (the worker threads, the server's and the bench's own).

Lag, and how it is measured. ``jobs.due_at`` and the ``at`` of the step logs are simulated
times (the frozen clock), so they say nothing about wall time. Instead, the bench wraps the
enrolment store's ``enrol``, ``apply`` and ``end`` methods on the running container (the calls
are unchanged; the wrapper notes ``time.monotonic()`` when each returns, i.e. after its
transaction committed) and the SMTP server notes when each message arrived (the same
monotonic clock, system-wide on Linux). For each enrolment in a phase:

- first: t0 → its first transition committed in the phase;
- settled: t0 → its last one (on its next wait, or exited);
- delivered: t0 → its email received by the SMTP server (day 1, and the baseline's send).

Every job of a phase becomes due at the same instant (the clock moves, or the events were
posted before the workers started), so lag is mostly queueing: p50 is roughly half the
phase's wall time and max roughly all of it. That is the lag a daily send to N customers
has on k workers; a trickle of customers would see the per-job service time instead. A real
deployment adds up to ``JOURNEY_WORKER_POLL_S`` (0.5 s) for an idle worker to notice a job
that came due by the passing of time; here the workers start at t0.

The result is checked before anything is reported (a failed check prints what failed and
exits 1, without figures): every enrolment exited, for the reason its customer's path gives;
the conversions (the store and ``GET /v1/journeys/{name}/metrics``) are exactly the
checkouts posted within the window, none of the late ones; the holdout share is within 4
standard errors of 10%; the emails sent (outbox rows ``sent``, the metrics' ``messages_sent``,
and the SMTP server's recipients, once each) are exactly the treatment customers the branch
nudged; each keen treatment customer has one open handoff to sales; no job failed.

    .venv/bin/python bench/journeys.py [--customers 10000] [--database sqlite|postgresql|both]
        [--workers 2] [--batch 1000] [--pg URL] [--json out.json] [--profile out.pstats]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from common import figures_table, percentile, scratch_postgres  # bench/common.py
from common import machine as machine_name
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import and_, func, or_, select
from sqlalchemy import event as sa_event

from api.app import create_app
from core.clock import FixedClock
from core.hub import JOBS_KEY
from core.settings import Settings
from journey.bulk import Importer
from journey.experiments import in_holdout
from journey.runtime import Container, build_container
from journey.worker import Worker
from memory import db
from memory.outbox import DUE_STATUSES

console = Console(width=None if sys.stdout.isatty() else 140)
KEY = "bench-key"
MULTI = "guide_followup"
SINGLE = "guide_once"
HOLDOUT = 0.10
#: 10:00 in New York, where the customers live: the sends fall outside the quiet hours
START = datetime(2026, 11, 3, 15, 0, tzinfo=UTC)
DAY1 = START + timedelta(days=1, minutes=5)
CHECKOUT_AT = START + timedelta(days=3)
PAST_WINDOW = START + timedelta(days=15)
LATE_AT = START + timedelta(days=16)

SIGNALS_AND_TEMPLATES = """
signals:
  - {event: page_view, where: {page: pricing}, scores: {purchase: 0.15}}
  - {event: content_download, scores: {research: 0.2}}
templates:
  guide_nurture: >-
    Hi {first_name}, thanks for downloading our guide. Chapter 2 has the three-step rollout.
"""

MULTI_STEP = SIGNALS_AND_TEMPLATES + f"""
journeys:
  - name: {MULTI}
    description: After a guide download, a day's wait; a buying signal goes to sales, the
      rest get the nurture email; the goal is a checkout within 14 days.
    intent: research
    trigger: {{event: content_download}}
    cooldown: 1d
    goal: {{event: checkout_completed, within: 14d}}
    holdout: {{share: {HOLDOUT}}}
    steps:
      - id: settle
        wait: 1d
      - id: buying_signal
        branch:
          - when: {{scores: {{purchase: {{gte: 0.3}}}}}}
            goto: alert_sales
          - goto: nurture
      - id: alert_sales
        escalate: {{queue: sales, priority: high, reason: "buying signal after the guide"}}
        next: await_goal
      - id: nurture
        send: {{channel: email, template: guide_nurture, subject: "Your guide, chapter 2"}}
      - id: await_goal
        wait_until: {{event: checkout_completed, timeout: 13d, on_event: converted,
                     on_timeout: timed_out}}
      - id: converted
        exit: converted
      - id: timed_out
        exit: no_checkout
"""

ONE_STEP = SIGNALS_AND_TEMPLATES + f"""
journeys:
  - name: {SINGLE}
    description: A guide download sends the nurture email a day later.
    intent: research
    trigger: {{event: content_download}}
    delay: 1d
    cooldown: 1d
    actions:
      send: {{channel: email, template: guide_nurture, subject: "Your guide, chapter 2"}}
"""

#: an SMTP server in its own process (as a mail relay would be): one line per message received,
#: "<time.monotonic()> <recipient>", flushed before the 250 reply
SINK = """
import sys, time
from aiosmtpd.controller import Controller
out = open(sys.argv[2], "a", buffering=1)
class Handler:
    async def handle_DATA(self, server, session, envelope):
        for rcpt in envelope.rcpt_tos:
            out.write(f"{time.monotonic()} {rcpt}\\n")
        out.flush()
        return "250 OK"
controller = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"""


# --- the plan: who does what (seeded) -------------------------------------------------------

@dataclass
class Plan:
    n: int
    keen: set[int]
    buyers: set[int]
    late: set[int]

    @staticmethod
    def make(n: int, keen: float, buyers: float, late: float, seed: int) -> Plan:
        rng = random.Random(seed)
        order = list(range(n))
        rng.shuffle(order)
        k, b, lt = round(n * keen), round(n * buyers), round(n * late)
        # the keen may buy too; the late buyers are others
        keen_set = set(order[:k])
        rng.shuffle(order)
        return Plan(n, keen_set, set(order[:b]), set(order[b:b + lt]))


def email(i: int) -> str:
    return f"c{i}@example.com"


def _event(eid: str, etype: str, at: datetime, i: int, **props: Any) -> dict[str, Any]:
    return {"id": eid, "type": etype, "customer": {"email": email(i)}, "properties": props,
            "occurred_at": at.isoformat()}


def download_events(plan: Plan) -> list[dict[str, Any]]:
    out = []
    for i in range(plan.n):
        out.append(_event(f"dl{i}", "content_download", START, i, asset="guide"))
        if i in plan.keen:
            out += [_event(f"pv{i}-{m}", "page_view", START + timedelta(seconds=m), i,
                           page="pricing") for m in (1, 2)]
    return out


# --- recording: wall-clock times of what was committed ---------------------------------------

@dataclass
class Recorder:
    """(monotonic time, customer id, what) for each enrolment transition committed."""

    entries: list[tuple[float, str, str]] = field(default_factory=list)

    def note(self, customer_id: str, what: str) -> None:
        self.entries.append((time.monotonic(), customer_id, what))  # atomic under the GIL

    def wrap(self, container: Container) -> None:
        """Wrap the enrolment store's writes on this container (behaviour unchanged)."""
        enrolments = container.store.enrolments
        enrol, apply, end = enrolments.enrol, enrolments.apply, enrolments.end

        def enrol_noted(**kwargs: Any) -> Any:
            done = enrol(**kwargs)
            if done is not None:
                self.note(done.customer_id, "enrolled")
            return done

        def apply_noted(enrolment: Any, change: Any) -> bool:
            won = apply(enrolment, change)
            if won:
                self.note(enrolment.customer_id, f"step:{change.changes.get('step')}")
            return won

        def end_noted(enrolment: Any, reason: str, logs: Any = (), *,
                      changes: dict[str, Any] | None = None) -> bool:
            won = end(enrolment, reason, logs, changes=changes)
            if won:
                self.note(enrolment.customer_id, f"exit:{reason}")
            return won

        enrolments.enrol = enrol_noted  # type: ignore[method-assign]
        enrolments.apply = apply_noted  # type: ignore[method-assign]
        enrolments.end = end_noted  # type: ignore[method-assign]

    def wrap_proactive(self, container: Container) -> None:
        """The one-step journey's decisions (``Orchestrator.run_proactive``), per customer."""
        orchestrator = container.orchestrator
        run = orchestrator.run_proactive

        def noted(job: Any) -> Any:
            decision = run(job)
            self.note(str(job.customer_id), "decided")
            return decision

        orchestrator.run_proactive = noted  # type: ignore[method-assign]


class SqlCounts:
    """Statements, commits and pool checkouts on the store's engine (SQLAlchemy events; the
    PostgreSQL pool pings each connection it hands out: ``pool_pre_ping``, one round trip)."""

    def __init__(self, engine: Any) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        sa_event.listen(engine, "before_cursor_execute", self._bump("statements"))
        sa_event.listen(engine, "commit", self._bump("commits"))
        sa_event.listen(engine, "checkout", self._bump("checkouts"))

    def _bump(self, key: str) -> Callable[..., None]:
        def bump(*_: Any, **__: Any) -> None:
            with self._lock:
                self.counts[key] += 1
        return bump

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)


class SmtpSink:
    """The SMTP server in a child process; :meth:`received` reads what it logged."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "smtp.log"
        self.path.touch()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.process = subprocess.Popen([sys.executable, "-c", SINK, str(self.port),
                                         str(self.path)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the SMTP server did not start")

    def received(self) -> list[tuple[float, str]]:
        out = []
        for line in self.path.read_text().splitlines():
            at, _, rcpt = line.partition(" ")
            out.append((float(at), rcpt))
        return out

    def count(self) -> int:
        with self.path.open("rb") as f:
            return sum(1 for _ in f)

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@contextmanager
def serving(container: Container) -> Iterator[httpx.Client]:
    """The app over ``container`` under uvicorn on a free loopback port (no worker threads:
    the bench starts them per phase); an HTTP client with the admin key."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(container=container), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600,
                          headers={"Authorization": f"Bearer {KEY}"}) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(10)


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True)


def _lag(values: list[float]) -> str:
    """p50 / p95 / max seconds."""
    if not values:
        return "-"
    values = sorted(values)
    return " / ".join(f"{v:.2f}" for v in (percentile(values, 0.5) or 0.0,
                                           percentile(values, 0.95) or 0.0, values[-1]))


# --- one run: a container, its server, its SMTP server ---------------------------------------

@dataclass
class Run:
    label: str
    container: Container
    clock: FixedClock
    http: httpx.Client
    sink: SmtpSink
    recorder: Recorder
    workers: int
    profiles: list[cProfile.Profile] | None
    sql: SqlCounts
    cids: dict[int, str] = field(default_factory=dict)

    # --- customers and events ----------------------------------------------------------------

    def import_customers(self, n: int) -> float:
        rows = [(i + 1, {
            "identities": {"email": email(i)}, "name": f"Pat{i} Doe",
            "timezone": "America/New_York", "lifecycle_stage": "consideration",
            "consent": {"email": {"service": {"status": "granted"},
                                  "marketing": {"status": "granted"}}},
        }) for i in range(n)]
        started = time.monotonic()
        with progress() as bar:
            task = bar.add_task(f"{self.label}: import {n} customers", total=n)
            summary = Importer(self.container.customers, by="bench").run(
                iter(rows), on_row=lambda: bar.advance(task))
        if summary.created != n:
            raise RuntimeError(f"imported {summary.created} customers of {n}: {summary}")
        wall = time.monotonic() - started
        console.log(f"{self.label}: {n} customers imported in {wall:.1f} s")
        return wall

    def post(self, events: list[dict[str, Any]], batch: int, what: str) -> dict[str, Any]:
        """``events`` over HTTP in batches; events/s and the batches' p50 / p95."""
        times = []
        started = time.monotonic()
        with progress() as bar:
            task = bar.add_task(f"{self.label}: {what}", total=len(events))
            for i in range(0, len(events), batch):
                chunk = events[i:i + batch]
                t = time.monotonic()
                response = self.http.post("/v1/events", json={"events": chunk})
                times.append(time.monotonic() - t)
                response.raise_for_status()
                body = response.json()
                if body["accepted"] != len(chunk):
                    raise RuntimeError(f"{what}: {body['accepted']} of {len(chunk)} accepted: "
                                       f"{[r for r in body['results'] if r['errors']][:3]}")
                for r in body["results"]:
                    if r["id"].startswith("dl"):
                        self.cids[int(r["id"][2:])] = r["customer_id"]
                bar.advance(task, len(chunk))
        wall = time.monotonic() - started
        console.log(f"{self.label}: {what}: {len(events)} events in {wall:.1f} s")
        return {"events": len(events), "wall_s": round(wall, 2),
                "events_per_s": round(len(events) / wall, 1),
                "batch_s": _lag(times)}

    # --- a phase of worker work -----------------------------------------------------------------

    def queue_state(self) -> tuple[int, int, int]:
        """(jobs due or running, outbox rows due or sending, jobs failed or retrying)."""
        now = self.clock.now()
        j, o = db.jobs, db.outbox
        when = func.coalesce(o.c.next_attempt_at, o.c.not_before, o.c.created_at)
        with self.container.engine.connect() as conn:
            jobs = conn.execute(select(func.count()).select_from(j).where(or_(
                and_(j.c.status == "pending", j.c.due_at <= now),
                j.c.status == "running"))).scalar_one()
            outbox = conn.execute(select(func.count()).select_from(o).where(or_(
                and_(o.c.status.in_(DUE_STATUSES), when <= now),
                o.c.status == "sending"))).scalar_one()
            failed = conn.execute(select(func.count()).select_from(j).where(
                j.c.error.is_not(None), j.c.status.in_(("pending", "failed")))).scalar_one()
        return int(jobs), int(outbox), int(failed)

    def phase(self, name: str, transitions: int, mails: int, stall_s: float) -> dict[str, Any]:
        """Start the workers with everything due (t0), wait until the phase's ``transitions``
        and ``mails`` are done and nothing is due, stop the workers; the figures."""
        first_entry = len(self.recorder.entries)
        first_mail = self.sink.count()
        sql0 = self.sql.snapshot()
        cpu0 = time.process_time()
        t0 = time.monotonic()
        pool = self.container.make_workers(self.workers, prefix=f"{self.label}-{name}")
        stop = self._start(pool.workers)
        last_done, last_change, last_check = -1, time.monotonic(), 0.0
        try:
            with progress() as bar:
                task = bar.add_task(f"{self.label}: {name}", total=transitions + mails)
                while True:
                    time.sleep(0.2)
                    done = len(self.recorder.entries) - first_entry + \
                        self.sink.count() - first_mail
                    bar.update(task, completed=done)
                    # the queue is read when the phase looks done, else every 5 s (failures)
                    if done >= transitions + mails or time.monotonic() - last_check > 5:
                        last_check = time.monotonic()
                        due, outbox, failed = self.queue_state()
                        if failed:
                            raise RuntimeError(f"{name}: {failed} jobs failed (see the log)")
                        if done >= transitions + mails and not due and not outbox:
                            break
                    if done != last_done:
                        last_done, last_change = done, time.monotonic()
                    elif time.monotonic() - last_change > stall_s:
                        due, outbox, _ = self.queue_state()
                        raise RuntimeError(
                            f"{name}: stalled at {done} of {transitions + mails} "
                            f"({due} jobs and {outbox} messages due)")
        finally:
            stop()
        cpu = time.process_time() - cpu0
        sql = self.sql.snapshot() - sql0
        entries = self.recorder.entries[first_entry:]
        received = self.sink.received()[first_mail:]
        end = max([t for t, _, _ in entries] + [t for t, _ in received] + [t0])
        wall = end - t0
        first: dict[str, float] = {}
        last: dict[str, float] = {}
        for t, cid, _ in entries:
            first.setdefault(cid, t - t0)
            last[cid] = t - t0
        out: dict[str, Any] = {
            "wall_s": round(wall, 2),
            "transitions": len(entries),
            "transitions_per_s": round(len(entries) / wall, 1) if wall else None,
            "customers": len(last),
            "customers_per_s": round(len(last) / wall, 1) if wall else None,
            "cpu_s": round(cpu, 1),
            "lag_first_s": _lag(list(first.values())),
            "lag_settled_s": _lag(list(last.values())),
            # per customer (the bench's own polling, 3 counts every 5 s, included)
            "sql_per_customer": {k: round(v / len(last), 1) for k, v in sorted(sql.items())}
            if last else {},
        }
        if mails:
            out["mails"] = len(received)
            out["lag_delivered_s"] = _lag([t - t0 for t, _ in received])
        console.log(f"{self.label}: {name}: {len(last)} customers, {len(entries)} transitions, "
                    f"{len(received)} emails in {wall:.1f} s")
        if len(entries) != transitions or len(received) != mails:
            raise RuntimeError(f"{name}: {len(entries)} transitions (expected {transitions}), "
                               f"{len(received)} mails (expected {mails})")
        return out

    def _start(self, workers: list[Worker]) -> Callable[[], None]:
        """A thread per worker running ``Worker.run_forever`` until stopped, as
        ``WorkerPool.start`` does (each under cProfile with ``--profile``)."""
        stop = threading.Event()
        profiles = self.profiles

        def loop(worker: Worker) -> None:
            if profiles is None:
                worker.run_forever(stop)
                return
            profile = cProfile.Profile()
            profile.enable()
            try:
                worker.run_forever(stop)
            finally:
                profile.disable()
                profiles.append(profile)

        threads = [threading.Thread(target=loop, args=(w,), daemon=True,
                                    name=f"journey-{w.name}") for w in workers]
        for t in threads:
            t.start()

        def halt() -> None:
            stop.set()
            self.container.hub.notify(JOBS_KEY)
            for t in threads:
                t.join(60)

        return halt


@contextmanager
def opened(label: str, url: str, text: str, data: Path, args: argparse.Namespace,
           shared: Container | None,
           profiles: list[cProfile.Profile] | None) -> Iterator[Run]:
    data.mkdir(parents=True, exist_ok=True)
    path = data / "journeys.yaml"
    path.write_text(text)
    clock = FixedClock(START)
    with ExitStack() as stack:
        sink = SmtpSink(data)
        stack.callback(sink.close)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=data, database_url=url, brain="rules", workers=0,
            api_keys={KEY: ["admin"]}, journeys_path=path,
            smtp_host="127.0.0.1", smtp_port=sink.port,
            rate_limit_login="", rate_limit_webchat_sessions="",
            rate_limit_webchat_messages="", rate_limit_api="",
        )
        container = build_container(
            settings, clock=clock,
            embedder=shared.embedder if shared else None,
            classifier=shared.classifier if shared else None,
            knowledge=shared.knowledge if shared else None)
        stack.callback(container.close)
        recorder = Recorder()
        recorder.wrap(container)
        if shared is not None:  # the baseline: its decisions are its transitions
            recorder.wrap_proactive(container)
        sql = SqlCounts(container.engine)
        http = stack.enter_context(serving(container))
        yield Run(label, container, clock, http, sink, recorder, args.workers, profiles, sql)


# --- the multi-step run ------------------------------------------------------------------------

def multi_step(run: Run, plan: Plan, args: argparse.Namespace) -> tuple[dict[str, Any],
                                                                       list[str]]:
    """The journey with steps, phase by phase; (figures, failed checks)."""
    figures: dict[str, Any] = {}
    figures["customers_import_s"] = round(run.import_customers(plan.n), 1)
    figures["ingest"] = run.post(download_events(plan), args.batch, "downloads")
    n = plan.n
    control = {i for i in range(n) if in_holdout(MULTI, run.cids[i], HOLDOUT, "")}
    treated = set(range(n)) - control
    keen_t = plan.keen & treated
    nudged = treated - plan.keen
    buyers_t = plan.buyers & treated
    stall = args.stall

    figures["enrol"] = run.phase("enrol", n + len(treated), 0, stall)
    run.clock.advance(seconds=(DAY1 - run.clock.now()).total_seconds())
    figures["day1"] = run.phase("day 1", 2 * len(treated), len(nudged), stall)
    run.clock.advance(seconds=(CHECKOUT_AT - run.clock.now()).total_seconds())
    figures["checkout_ingest"] = run.post(
        [_event(f"buy{i}", "checkout_completed", CHECKOUT_AT, i) for i in sorted(plan.buyers)],
        args.batch, "checkouts")
    figures["goal"] = run.phase("goal", len(buyers_t), 0, stall)
    run.clock.advance(seconds=(PAST_WINDOW - run.clock.now()).total_seconds())
    figures["timeout"] = run.phase("timeout", len(treated) - len(buyers_t), 0, stall)
    run.clock.advance(seconds=(LATE_AT - run.clock.now()).total_seconds())
    run.post([_event(f"late{i}", "checkout_completed", LATE_AT, i) for i in sorted(plan.late)],
             args.batch, "late checkouts")
    run.phase("late", 0, 0, stall)

    # --- is the result right? ------------------------------------------------------------------
    failed: list[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            failed.append(what)

    store = run.container.store
    by_cid = {cid: i for i, cid in run.cids.items()}
    enrolments = store.enrolments.for_journey(MULTI)
    check(len(enrolments) == n and {by_cid[e.customer_id] for e in enrolments} == set(range(n)),
          f"{len(enrolments)} enrolments for {n} customers, one each")
    check(all(e.status == "exited" for e in enrolments),
          f"{sum(e.status != 'exited' for e in enrolments)} enrolments not exited")

    def expected_exit(i: int) -> str:
        if i in control:
            return "holdout"
        if i in plan.buyers:
            return "goal"
        return "handoff" if i in plan.keen else "exit:no_checkout"

    wrong = [(by_cid[e.customer_id], e.exit_reason) for e in enrolments
             if e.exit_reason != expected_exit(by_cid[e.customer_id])]
    check(not wrong, f"{len(wrong)} enrolments exited for another reason, e.g. {wrong[:3]}")
    converted = {by_cid[e.customer_id] for e in enrolments if e.converted_at is not None}
    check(converted == plan.buyers,
          f"conversions: {len(converted)} counted, {len(plan.buyers)} checkouts in the window "
          f"({len(converted - plan.buyers)} not posted, {len(plan.buyers - converted)} missed)")
    share = len(control) / n
    se = (HOLDOUT * (1 - HOLDOUT) / n) ** 0.5
    check(abs(share - HOLDOUT) <= 4 * se,
          f"holdout share {share:.4f}, expected {HOLDOUT} ± {4 * se:.4f}")
    arms = Counter(e.arm for e in enrolments)
    check(arms["holdout"] == len(control), f"holdout arm {arms['holdout']} vs {len(control)}")
    with run.container.engine.connect() as conn:
        o = db.outbox
        sent = conn.execute(select(o.c.address, o.c.status).where(o.c.channel == "email")).all()
        handoffs = conn.execute(select(db.handoffs.c.customer_id, db.handoffs.c.queue)).all()
        failed_jobs = conn.execute(select(func.count()).select_from(db.jobs).where(
            db.jobs.c.status == "failed")).scalar_one()
    nudged_emails = {email(i) for i in nudged}
    check(Counter(status for _, status in sent) == Counter({"sent": len(nudged)}),
          f"outbox: {Counter(s for _, s in sent)}, expected {len(nudged)} sent")
    check({a for a, _ in sent} == nudged_emails, "outbox recipients are not the nudged customers")
    smtp = [rcpt for _, rcpt in run.sink.received()]
    check(len(smtp) == len(nudged) and set(smtp) == nudged_emails,
          f"SMTP server: {len(smtp)} messages to {len(set(smtp))} recipients, "
          f"expected {len(nudged)} to the nudged customers")
    check(sorted((by_cid[c], q) for c, q in handoffs) == sorted((i, "sales") for i in keen_t),
          f"handoffs: {len(handoffs)}, expected one to sales for each of {len(keen_t)} keen")
    check(failed_jobs == 0, f"{failed_jobs} jobs failed")
    metrics = run.http.get(f"/v1/journeys/{MULTI}/metrics").json()
    check(metrics["entered"] == n and metrics["active"] == 0
          and metrics["conversions"] == len(plan.buyers)
          and metrics["messages_sent"] == len(nudged)
          and metrics["by_arm"] == {"treatment": len(treated), "holdout": len(control)},
          "GET /v1/journeys/{name}/metrics: " + json.dumps(
              {k: metrics.get(k) for k in ("entered", "active", "conversions", "messages_sent",
                                           "by_arm")}))
    figures["population"] = {
        "customers": n, "holdout": len(control), "treatment": len(treated),
        "keen_escalated": len(keen_t), "emails": len(nudged), "buyers": len(plan.buyers),
        "late_buyers": len(plan.late), "exits": dict(Counter(e.exit_reason for e in enrolments)),
    }
    return figures, failed


def one_step(run: Run, plan: Plan, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """The baseline: the same customers and events, the one-step journey's send a day later."""
    figures: dict[str, Any] = {}
    figures["customers_import_s"] = round(run.import_customers(plan.n), 1)
    figures["ingest"] = run.post(download_events(plan), args.batch, "downloads")
    run.clock.advance(seconds=(DAY1 - run.clock.now()).total_seconds())
    figures["day1"] = run.phase("day 1", plan.n, plan.n, args.stall)
    failed = []
    with run.container.engine.connect() as conn:
        o = db.outbox
        statuses = Counter(conn.execute(select(o.c.status)).scalars().all())
        decisions = conn.execute(select(func.count()).select_from(db.decisions)).scalar_one()
    if statuses != Counter({"sent": plan.n}):
        failed.append(f"one-step outbox: {statuses}, expected {plan.n} sent")
    if decisions != plan.n:
        failed.append(f"one-step: {decisions} decisions for {plan.n} customers")
    smtp = [rcpt for _, rcpt in run.sink.received()]
    if len(smtp) != plan.n or set(smtp) != {email(i) for i in range(plan.n)}:
        failed.append(f"one-step SMTP: {len(smtp)} messages to {len(set(smtp))} recipients")
    return figures, failed


# --- the report --------------------------------------------------------------------------------

def _sql(phase: dict[str, Any]) -> str:
    c = phase["sql_per_customer"]
    return (f"{c.get('statements', 0)} statements, {c.get('commits', 0)} commits, "
            f"{c.get('checkouts', 0)} checkouts")


def flat(database: str, multi: dict[str, Any], single: dict[str, Any]) -> dict[str, Any]:
    """One column of the table: the figures as text."""
    worker_multi = sum(multi[p]["wall_s"] for p in ("enrol", "day1", "goal", "timeout"))
    worker_single = single["day1"]["wall_s"]
    per_customer_multi = worker_multi / multi["population"]["customers"]
    out: dict[str, Any] = {"database": database}
    out["customers (import s)"] = f"{multi['population']['customers']} " \
                                  f"({multi['customers_import_s']})"
    i = multi["ingest"]
    out["ingest: events, events/s, batch s p50/p95/max"] = \
        f"{i['events']}, {i['events_per_s']}, {i['batch_s']}"
    names = {"enrol": "enrol (on the 1d wait)", "day1": "day 1 (branch, send/escalate)",
             "goal": "goal (checkout → exit)", "timeout": "timeout (exit)"}
    for key, name in names.items():
        p = multi[key]
        out[f"{name}: wall s, CPU s"] = f"{p['wall_s']}, {p['cpu_s']}"
        out[f"{name}: enrolments/s, transitions/s"] = \
            f"{p['customers_per_s']}, {p['transitions_per_s']}"
        out[f"{name}: lag s first p50/p95/max"] = p["lag_first_s"]
        out[f"{name}: lag s settled p50/p95/max"] = p["lag_settled_s"]
        out[f"{name}: SQL per enrolment"] = _sql(p)
        if "lag_delivered_s" in p:
            out[f"{name}: lag s email delivered p50/p95/max"] = p["lag_delivered_s"]
    c = multi["checkout_ingest"]
    out["checkouts posted: events, events/s"] = f"{c['events']}, {c['events_per_s']}"
    s = single["day1"]
    out["one-step day 1 (send): wall s, CPU s"] = f"{s['wall_s']}, {s['cpu_s']}"
    out["one-step day 1: customers/s"] = f"{s['customers_per_s']}"
    out["one-step day 1: lag s decided p50/p95/max"] = s["lag_settled_s"]
    out["one-step day 1: lag s email delivered p50/p95/max"] = s["lag_delivered_s"]
    out["one-step day 1: SQL per customer"] = _sql(s)
    out["workers' wall s: multi-step (4 phases) / one-step"] = \
        f"{worker_multi:.1f} / {worker_single:.1f} = {worker_multi / worker_single:.2f}×"
    out["per customer ms: multi-step / one-step"] = \
        f"{per_customer_multi * 1000:.2f} / {worker_single * 1000 / single['customers']:.2f}"
    out["day 1 alone: multi-step / one-step"] = \
        f"{multi['day1']['wall_s'] / worker_single:.2f}×"
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def database_urls(database: str, tmp: Path, pg: str) -> Callable[[str], Any]:
    """``name`` → a context manager giving a fresh, empty database's URL."""
    @contextmanager
    def sqlite_url(name: str) -> Iterator[str]:
        yield f"sqlite:///{tmp / f'{database}-{name}.sqlite'}"

    def pg_url(name: str) -> Any:
        return scratch_postgres(pg, label=f"journeys_{name}")

    return sqlite_url if database == "sqlite" else pg_url


def run_database(database: str, url_for: Callable[[str], Any], plan: Plan,
                 args: argparse.Namespace, tmp: Path,
                 profiles: list[cProfile.Profile] | None) -> dict[str, Any]:
    with url_for("multi") as url, opened(f"{database} multi-step", url, MULTI_STEP,
                                         tmp / f"{database}-multi", args, None, profiles) as run:
        multi, failed = multi_step(run, plan, args)
        shared = run.container
        with url_for("single") as url2, opened(f"{database} one-step", url2, ONE_STEP,
                                               tmp / f"{database}-single", args, shared,
                                               None) as baseline:
            single, failed2 = one_step(baseline, plan, args)
            single["customers"] = plan.n
    failed += failed2
    if failed:
        console.print(f"[red]{database}: the result is wrong; no figures are reported:")
        for f in failed:
            console.print(f"  [red]✗[/red] {f}")
        raise SystemExit(1)
    console.print(f"[green]{database}: every check passed[/green] "
                  f"({json.dumps(multi['population'])})")
    return {"database": database, "multi_step": multi, "one_step": single}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See the module's docstring (the top of bench/journeys.py) for the phases, how "
        "lag is measured and what is checked before any figure is reported.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000,
                        help="customers enrolled (each posts one content_download)")
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"],
                        default="sqlite")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL server; scratch databases are created and dropped")
    parser.add_argument("--workers", type=int, default=2,
                        help="worker threads (container.make_workers) in each phase")
    parser.add_argument("--batch", type=int, default=1000, help="events per POST /v1/events")
    parser.add_argument("--keen", type=float, default=0.05,
                        help="share of customers with two pricing views (escalated to sales)")
    parser.add_argument("--buyers", type=float, default=0.2,
                        help="share of customers posting a checkout within the goal window")
    parser.add_argument("--late", type=float, default=0.05,
                        help="share posting a checkout after the window (must not count)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--stall", type=float, default=120.0,
                        help="fail a phase that makes no progress for this many seconds")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--profile", type=Path,
                        help="run the multi-step run's worker threads under cProfile and "
                        "write the merged stats here (the timings are then inflated)")
    args = parser.parse_args()
    plan = Plan.make(args.customers, args.keen, args.buyers, args.late, args.seed)
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    profiles: list[cProfile.Profile] | None = [] if args.profile else None
    results = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for database in databases:
            results.append(run_database(database, database_urls(database, tmp, args.pg),
                                        plan, args, tmp, profiles))
    where = f"{machine_name()}, {cpu_model()}, nproc {os.cpu_count()}"
    rows = [flat(r["database"], r["multi_step"], r["one_step"]) for r in results]
    console.print(figures_table(
        f"journeys: {args.customers} customers, {args.workers} worker threads, "
        f"email over SMTP to a local aiosmtpd process, events over HTTP, on {where}",
        [r["database"] for r in rows], rows, skip=["database"]))
    if args.profile and profiles:
        stats = pstats.Stats(*profiles)  # type: ignore[arg-type]
        stats.dump_stats(args.profile)
        out = io.StringIO()
        pstats.Stats(str(args.profile), stream=out).sort_stats("tottime").print_stats(30)
        console.print(out.getvalue())
    if args.json:
        args.json.write_text(json.dumps({
            "machine": where, "customers": args.customers, "workers": args.workers,
            "batch": args.batch, "email": "SMTP adapter → aiosmtpd in a child process",
            "events": "POST /v1/events over HTTP", "profiled": bool(args.profile),
            "results": results, "table": rows}, indent=2, default=str))


if __name__ == "__main__":
    main()
