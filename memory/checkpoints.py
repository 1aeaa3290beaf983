"""The LangGraph checkpointer: where a paused turn (an approval waiting) and each graph step are
kept. A SQLite file beside the SQLite store, or PostgreSQL tables beside the PostgreSQL one."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)

from core.settings import Settings
from memory import migrate
from memory.locks import file_lock


def pg_conninfo(database_url: str) -> str:
    """A libpq URL from an SQLAlchemy one (drops the ``+psycopg`` driver suffix)."""
    scheme, rest = database_url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgresql") else database_url


def make_checkpointer(settings: Settings) -> tuple[BaseCheckpointSaver[Any], Callable[[], None]]:
    """SQLite saver beside the SQLite store, Postgres saver with PostgreSQL (its tables are
    created under an advisory lock)."""
    if settings.is_postgres:
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        pool = ConnectionPool(
            pg_conninfo(settings.resolved_database_url),
            min_size=1,
            max_size=8,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
            open=True,
        )
        saver: BaseCheckpointSaver[Any] = PostgresSaver(pool)  # type: ignore[arg-type]
        # setup() creates its tables and records its version without a lock: two processes
        # starting together collide (UniqueViolation), so one at a time, as memory.migrate does
        with migrate.postgres_lock(pg_conninfo(settings.resolved_database_url),
                                   migrate.CHECKPOINTS_LOCK):
            saver.setup()  # type: ignore[attr-defined]
        return saver, pool.close
    from langgraph.checkpoint.sqlite import SqliteSaver

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / "checkpoints.sqlite"
    # processes (or threads) sharing the file set it up one at a time: two at once can meet
    # "database is locked" (switching to WAL takes the file exclusively, and a read
    # transaction cannot become a write one in WAL mode), so the switch and the tables are
    # made under one file lock; later writers wait on the busy timeout
    with file_lock(path.with_name(path.name + ".setup.lock")):
        conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        sqlite_saver = SqliteSaver(conn)
        sqlite_saver.setup()
    return sqlite_saver, conn.close


class SlimCheckpointer(BaseCheckpointSaver[Any]):
    """A saver that keeps in full only the checkpoints that must survive: those whose state
    has a value in ``full_when`` (a turn paused for a person). Any other checkpoint (a turn
    that ended in one pass, or failed) is stored with only the ``keep`` channels, the record
    of what the turn decided; the context it read (profile, history, events…) is not kept.

    Meant for graphs run with ``durability="exit"``: one checkpoint per run, at its end, so
    that is the state the run ended in. Everything else is the wrapped saver's."""

    def __init__(self, inner: BaseCheckpointSaver[Any], *, full_when: str,
                 keep: frozenset[str]) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self.full_when = full_when
        self.keep = keep

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        values = checkpoint["channel_values"]
        if not values.get(self.full_when):
            kept = {k: v for k, v in values.items() if k in self.keep}
            checkpoint = {**checkpoint, "channel_values": kept}
            new_versions = {k: v for k, v in new_versions.items() if k in kept}
        return self.inner.put(config, checkpoint, metadata, new_versions)

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                   task_id: str, task_path: str = "") -> None:
        self.inner.put_writes(config, writes, task_id, task_path)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.inner.get_tuple(config)

    def list(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
             before: RunnableConfig | None = None,
             limit: int | None = None) -> Iterator[CheckpointTuple]:
        return self.inner.list(config, filter=filter, before=before, limit=limit)

    def delete_thread(self, thread_id: str) -> None:
        self.inner.delete_thread(thread_id)

    def get_next_version(self, current: Any, channel: None) -> Any:
        return self.inner.get_next_version(current, channel)


def forget_threads(saver: BaseCheckpointSaver[Any], thread_ids: Sequence[str]) -> int:
    """Delete the checkpoints and pending writes of ``thread_ids`` (a person's turns), then,
    on the SQLite saver, rebuild its file and truncate its write-ahead log so no page keeps
    them. Returns how many threads had checkpoints."""
    if not thread_ids:
        return 0
    found: int | None = None
    if isinstance(saver, _sqlite_saver()):
        with saver.lock:
            saver.conn.execute("PRAGMA secure_delete=ON")
            marks = ",".join("?" * len(thread_ids))
            found = saver.conn.execute(
                f"SELECT COUNT(DISTINCT thread_id) FROM checkpoints WHERE thread_id IN ({marks})",
                list(thread_ids)).fetchone()[0]
            saver.conn.commit()
    for thread_id in thread_ids:
        saver.delete_thread(thread_id)
    if isinstance(saver, _sqlite_saver()):
        with saver.lock:
            saver.conn.execute("VACUUM")
            checkpoint_wal(saver.conn)
    return len(thread_ids) if found is None else int(found)


def checkpoint_wal(conn: sqlite3.Connection, attempts: int = 50) -> None:
    """Copy the write-ahead log into the file and truncate it to nothing; a reader holding
    an old snapshot makes SQLite answer busy, so try again a little later."""
    for _ in range(attempts):
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            return
        time.sleep(0.05)


def _sqlite_saver() -> type[Any]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    return SqliteSaver
