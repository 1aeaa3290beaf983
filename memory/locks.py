"""One conversation at a time, in every process: the lock a turn holds while it runs.

A conversation's turns must not overlap (the second would decide without the first's reply in
its context) and must run in the order the messages arrived, whichever process — ``journey
serve`` answering inline, a ``journey worker`` running a queued turn — takes which message. So
a turn holds its conversation's lock:

- in the process, a striped ``threading.Lock`` (bounded memory, no lock table);
- across processes, a PostgreSQL advisory lock on its own connection (session level: a
  process that dies, kill -9 included, releases it with its connection), or on SQLite an
  ``flock`` on one of 64 files beside the database file (the OS releases it with the process).

Waiting polls (``pg_try_advisory_lock``, ``LOCK_NB``) so a wait can have a deadline
(:class:`LockTimeout`) and never holds a database snapshot while it waits.
"""

from __future__ import annotations

import fcntl
import hashlib
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, func, select

STRIPES = 64
#: How often a waiting turn looks again (doubling up to the second value).
POLL_S = (0.005, 0.1)


class LockTimeout(Exception):
    """The conversation stayed locked (a turn is running) until the deadline."""


def advisory_key(name: str) -> int:
    """A signed 64-bit PostgreSQL advisory lock key for ``name``."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big",
                          signed=True)


def _stripe(name: str) -> int:
    return zlib.crc32(name.encode()) % STRIPES


class ConversationLocks:
    """``with locks.hold(conversation_id):`` runs one turn of that conversation at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._threads = [threading.Lock() for _ in range(STRIPES)]
        self._dir: Path | None = None
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database and database != ":memory:" \
                and not database.startswith("file:"):
            self._dir = Path(database).with_name(Path(database).name + ".locks")

    @contextmanager
    def hold(self, key: str, timeout_s: float | None = None) -> Iterator[None]:
        """Hold the lock of ``key`` (a conversation id); wait at most ``timeout_s`` (None: as
        long as it takes), else raise :class:`LockTimeout`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        name = f"turns:{key}"
        local = self._threads[_stripe(name)]
        if not local.acquire(timeout=-1 if timeout_s is None else max(timeout_s, 0.0)):
            raise LockTimeout(key)
        try:
            if self.engine.dialect.name == "postgresql":
                with self._advisory(name, deadline):
                    yield
            elif self._dir is not None:
                with self._flock(name, deadline):
                    yield
            else:
                yield
        finally:
            local.release()

    @contextmanager
    def hold_many(self, keys: Sequence[str]) -> Iterator[None]:
        """Hold the locks of all ``keys`` (an erasure holds every conversation of the person),
        in a fixed order so two callers cannot deadlock; two keys on one in-process stripe are
        held once."""
        with ExitStack() as stack:
            stripes: set[int] = set()
            for key in sorted(set(keys)):
                stripe = _stripe(f"turns:{key}")
                if stripe not in stripes:
                    stripes.add(stripe)
                    stack.enter_context(self.hold(key))
            yield

    @contextmanager
    def _advisory(self, name: str, deadline: float | None) -> Iterator[None]:
        key = advisory_key(name)
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            wait_for(lambda: _try_advisory(conn, key), deadline, name)
            try:
                yield
            finally:
                conn.execute(select(func.pg_advisory_unlock(key)))

    def _flock(self, name: str, deadline: float | None) -> AbstractContextManager[None]:
        if self._dir is None:  # pragma: no cover - only called with a directory
            raise RuntimeError("no lock directory")
        return file_lock(self._dir / f"{_stripe(name):02d}.lock", deadline)


@contextmanager
def file_lock(path: Path, deadline: float | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing); wait until ``deadline``
    (a ``time.monotonic()``; None: as long as it takes). A process that dies releases it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        wait_for(lambda: _try_flock(handle), deadline, str(path))
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _try_advisory(conn: Connection, key: int) -> bool:
    return bool(conn.execute(select(func.pg_try_advisory_lock(key))).scalar())


def _try_flock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def wait_for(attempt: Callable[[], bool], deadline: float | None, name: str) -> None:
    """Call ``attempt`` until it returns True, backing off; LockTimeout after ``deadline``."""
    pause = POLL_S[0]
    while not attempt():
        if deadline is not None and time.monotonic() >= deadline:
            raise LockTimeout(name)
        time.sleep(pause)
        pause = min(pause * 2, POLL_S[1])
