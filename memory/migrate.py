"""Schema migrations: ``upgrade(engine)`` brings any database to the newest schema.

Every process migrates the database when it starts (``journey serve``, ``journey worker``, the
CLI), so several can start together on one empty database. Concurrent CREATE TABLEs collide
(PostgreSQL: UniqueViolation on ``pg_type``; SQLite: "table already exists"), so migrations run
one at a time: under a PostgreSQL advisory lock taken first in the migration transaction, or an
exclusive lock on a file beside the SQLite file (``<file>.migrate.lock``; an in-memory database
needs none). The next process waits, then finds the schema at head and does nothing. Alembic
keeps the running migration in module globals, so one process also migrates in one thread at a
time. ``postgres_lock`` serves the LangGraph checkpointer's own tables the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine

from memory.locks import file_lock, wait_for

MIGRATIONS = Path(__file__).parent / "migrations"
#: Advisory lock keys (any fixed 64-bit numbers; these spell "journey" and a digit): the schema
#: migrations, and the LangGraph checkpointer's tables (``memory.checkpoints``).
MIGRATIONS_LOCK = 0x6A6F75726E657901
CHECKPOINTS_LOCK = 0x6A6F75726E657902

_one_thread = threading.Lock()


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


@contextmanager
def postgres_lock(conninfo: str, key: int) -> Iterator[None]:
    """Hold the session-level advisory lock ``key`` on a connection of its own (libpq
    ``conninfo``), waiting for any holder; closing the connection releases it.

    It polls ``pg_try_advisory_lock`` instead of waiting in ``pg_advisory_lock``: a waiting
    statement holds a snapshot, and the holder's CREATE INDEX CONCURRENTLY (the checkpointer's
    migrations) waits for every snapshot in the database: it would wait for its own waiters."""
    with psycopg.connect(conninfo, autocommit=True) as conn:

        def taken() -> bool:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            return bool(row and row[0])

        wait_for(taken, None, f"advisory lock {key}")
        yield


def _sqlite_lock(engine: Engine) -> AbstractContextManager[None]:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return nullcontext()  # in memory (or a URI, left alone): no lock
    return file_lock(Path(database).with_name(Path(database).name + ".migrate.lock"))


def _run(engine: Engine, step: Callable[[Config], None]) -> None:
    cfg = alembic_config(engine)
    with _one_thread:
        if engine.dialect.name != "sqlite":
            with engine.begin() as connection:
                if engine.dialect.name == "postgresql":
                    # held until this transaction ends (commit, rollback, or a dead session)
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATIONS_LOCK})")
                cfg.attributes["connection"] = connection
                step(cfg)
            return
        with _sqlite_lock(engine), engine.connect() as connection:
            _run_sqlite(connection, cfg, step)


def _run_sqlite(connection: Connection, cfg: Config, step: Callable[[Config], None]) -> None:
    # SQLite rebuilds a table to change a column (batch mode); with foreign keys enforced,
    # dropping the old table would fail. SQLite's documented procedure: enforcement off
    # outside the transaction, rebuild, check the keys, enforcement back on.
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()
    try:
        with connection.begin():
            cfg.attributes["connection"] = connection
            step(cfg)
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if broken:
                raise RuntimeError(f"a migration broke foreign keys: {broken[:5]}")
    finally:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()


def upgrade(engine: Engine, revision: str = "head") -> None:
    _run(engine, lambda cfg: command.upgrade(cfg, revision))


def downgrade(engine: Engine, revision: str) -> None:
    _run(engine, lambda cfg: command.downgrade(cfg, revision))
