"""In-process notifications: "something new for this customer" (a web-chat stream wakes up)
and "work was queued" (an idle worker wakes up). Across processes the readers also poll the
database, so a notification is a shortcut, never the only path."""

from __future__ import annotations

import threading
from collections import defaultdict

#: the key idle workers wait on: "work was queued"
JOBS_KEY = "jobs"


class Hub:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: dict[str, int] = defaultdict(int)

    def notify(self, key: str) -> None:
        with self._cond:
            self._versions[key] += 1
            self._cond.notify_all()

    def version(self, key: str) -> int:
        with self._cond:
            return self._versions[key]

    def wait(self, key: str, seen: int, timeout: float) -> int:
        """Block until ``key``'s version differs from ``seen`` or ``timeout`` passes; returns
        the current version."""
        with self._cond:
            self._cond.wait_for(lambda: self._versions[key] != seen, timeout=timeout)
            return self._versions[key]
