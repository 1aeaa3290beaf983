"""Issue 13, finding 6: `journey serve` and `journey worker` started together on an empty
PostgreSQL database crashed in the migration (UniqueViolation on pg_type); on one new SQLite
file: "table ... already exists".

Every process migrates the database when it starts (``build_container``). The migrations now
run one process at a time: under a PostgreSQL advisory lock, or a file lock beside an SQLite
file; the second process finds the schema at head and does nothing. The LangGraph checkpointer
creates its own tables under a lock too.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.script import ScriptDirectory
from langgraph.checkpoint.postgres import PostgresSaver

from core.settings import Settings
from memory import migrate
from memory.checkpoints import make_checkpointer, pg_conninfo
from memory.db import make_engine
from tests.trust.processes import JourneyProcess, running_processes

#: The newest revision in memory/migrations/versions.
HEAD = ScriptDirectory(str(migrate.MIGRATIONS)).get_current_head()
#: Start-together rounds, each on a new empty database, and the workers started with the server
#: in each. Before the fix, 1 server + 2 workers on PostgreSQL collided in 1 round of 3; with 4
#: workers, every run of this test failed in its first round (PostgreSQL 4 of 4, SQLite 3 of 3),
#: so one round keeps the suite short; the process-level tests below race the locks directly.
ROUNDS = 1
WORKERS = 4
#: Threads, and processes, racing one another in the unit-level tests.
THREADS = 6
PROCESSES = 4


@pytest.fixture
def new_pg_database(pg_server: str) -> Iterator[Callable[[], str]]:
    """Makes new empty PostgreSQL databases (SQLAlchemy URLs); drops them after the test."""
    names: list[str] = []

    def make() -> str:
        name = f"jo_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        names.append(name)
        base = pg_server.rsplit("/", 1)[0]
        return f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"

    yield make
    with psycopg.connect(pg_server, autocommit=True) as admin:
        for name in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_conninfo(url)) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def alembic_version(url: str) -> list[tuple[Any, ...]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.exec_driver_sql("SELECT * FROM alembic_version")]
    finally:
        engine.dispose()


def all_ready_without_a_traceback(processes: list[JourneyProcess]) -> None:
    for process in processes:
        process.wait_ready()
    for process in processes:
        if "Traceback" in process.log():
            process.fail("logged a traceback")


def in_threads(n: int, target: Callable[[int], None], deadline_s: float = 120.0) -> list[str]:
    """Run ``target(i)`` in ``n`` threads released together; what went wrong: the exceptions
    raised and the threads still running after ``deadline_s`` (a deadlock)."""
    start = threading.Barrier(n)
    problems: list[str] = []

    def run(i: int) -> None:
        start.wait()
        try:
            target(i)
        except Exception as exc:
            problems.append(f"thread {i}: {exc!r}")

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + deadline_s
    for i, thread in enumerate(threads):
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            problems.append(f"thread {i}: still running after {deadline_s:.0f} s")
    return problems


# --------------------------------------------------------------------------- real processes


@pytest.mark.slow
@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_serve_and_four_workers_started_together_on_an_empty_database_all_come_up(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    for round_ in range(ROUNDS):
        if database == "postgres":
            url = request.getfixturevalue("new_pg_database")()
        else:  # one SQLite file; each process has its own data dir (Chroma, checkpoints)
            url = f"sqlite:///{tmp_path / f'round{round_}' / 'journey.sqlite'}"
        settings = {"JOURNEY_DATABASE_URL": url}
        with running_processes(tmp_path / f"round{round_}") as procs:
            started = [procs.serve(settings)]
            started += [procs.worker(settings) for _ in range(WORKERS)]
            all_ready_without_a_traceback(started)
        assert alembic_version(url) == [(HEAD,)]
        if database == "postgres":
            assert pg_rows(url, "SELECT v FROM checkpoint_migrations ORDER BY v") == [
                (v,) for v in range(len(PostgresSaver.MIGRATIONS))
            ]


# --------------------------------------------------------------------------- threads
# Before the fix: on PostgreSQL the threads deadlocked (alembic keeps the running migration in
# module globals, so one thread ran its DDL on another's connection); on SQLite "table
# alembic_version already exists"; the PostgreSQL checkpointer: UniqueViolation on pg_type. The
# SQLite checkpointer failed now and then (1 run in 8: "database is locked", a WAL read
# transaction that could not become a write one): it is set up under a file lock too.


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_upgrade_from_several_threads_on_one_empty_database(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    url = (request.getfixturevalue("pg_url") if database == "postgres"
           else f"sqlite:///{tmp_path / 'journey.sqlite'}")
    engines = [make_engine(url) for _ in range(THREADS)]
    try:
        assert in_threads(THREADS, lambda i: migrate.upgrade(engines[i])) == []
    finally:
        for engine in engines:
            engine.dispose()
    assert alembic_version(url) == [(HEAD,)]


#: A process that migrates ``argv[1]`` once ``argv[3]`` exists (it creates ``argv[2]`` when set).
UPGRADE_WHEN_RELEASED = """
import sys, time
from pathlib import Path
from memory import migrate
from memory.db import make_engine
engine = make_engine(sys.argv[1])
Path(sys.argv[2]).touch()
while not Path(sys.argv[3]).exists():
    time.sleep(0.005)
migrate.upgrade(engine)
"""


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_upgrade_from_several_processes_on_one_empty_database(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    """The locks themselves (within one process, a thread lock already serializes alembic)."""
    url = (request.getfixturevalue("pg_url") if database == "postgres"
           else f"sqlite:///{tmp_path / 'journey.sqlite'}")
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(PROCESSES)]
    children = [
        subprocess.Popen([sys.executable, "-c", UPGRADE_WHEN_RELEASED, url, str(r), str(go)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         cwd=tmp_path)
        for r in ready
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()
        outputs = [child.communicate(timeout=120)[0] for child in children]
    finally:
        for child in children:
            child.kill()
    failures = [f"exit {child.returncode}: " + (re.findall(r"(?m)^[\w.]+: .*$", out) or [out])[-1]
                for child, out in zip(children, outputs, strict=True) if child.returncode]
    assert failures == []
    assert alembic_version(url) == [(HEAD,)]


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_checkpointer_set_up_from_several_threads_on_one_database(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_url") if database == "postgres" else ""
    # one data dir: with SQLite, every thread opens the same checkpoints.sqlite
    settings = Settings(
        _env_file=None, data_dir=tmp_path / "data", database_url=url  # type: ignore[call-arg]
    )
    closers: list[Callable[[], None]] = []

    def set_up(_: int) -> None:
        closers.append(make_checkpointer(settings)[1])

    try:
        assert in_threads(THREADS, set_up) == []
    finally:
        for close in closers:
            close()
