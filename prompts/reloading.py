"""A data file in force, re-read when it changes on disk: the policy and the journeys.

``get()`` looks at the file's modification time and size at most every ``CHECK_EVERY_S`` and
re-reads it when they changed. An invalid edit is refused: ``last_error`` says why (with line
numbers) and the last valid version stays in force. ``reload()`` re-reads at once and raises.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from prompts.yamlcheck import YamlInvalid

log = logging.getLogger(__name__)

T = TypeVar("T")


class ReloadingFile(Generic[T]):
    """The validated contents of ``path`` in force (``load`` reads and validates it)."""

    CHECK_EVERY_S = 0.5

    def __init__(
        self,
        path: Path,
        load: Callable[[Path], T],
        version: Callable[[T], str],
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.path = path
        self._load = load
        self._version = version
        self._monotonic = clock or time.monotonic
        self._lock = threading.Lock()
        self._value = load(path)  # an invalid file stops start-up here
        self._stamp = self._stat()
        self._checked = self._monotonic()
        self.last_error: YamlInvalid | None = None

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def get(self) -> T:
        """What is in force; re-read first when the file changed (at most every 0.5 s)."""
        now = self._monotonic()
        if now - self._checked >= self.CHECK_EVERY_S:
            self._checked = now
            if self._stat() != self._stamp:
                # reload() records a refusal; the last valid version stays in force
                with contextlib.suppress(YamlInvalid):
                    self.reload()
        return self._value

    def reload(self) -> T:
        """Re-read the file now. Raises the file's :class:`YamlInvalid`; the last valid
        version stays in force."""
        with self._lock:
            stamp = self._stat()  # before reading: a later save is seen next time
            try:
                value = self._load(self.path)
            except YamlInvalid as exc:
                self.last_error, self._stamp = exc, stamp
                log.error("%s reload refused, keeping version %s: %s", exc.kind,
                          self._version(self._value), exc)
                raise
            if self._version(value) != self._version(self._value):
                log.info("%s reloaded: %s → %s", self.path.name, self._version(self._value),
                         self._version(value))
            self._value, self._stamp, self.last_error = value, stamp, None
            return value
