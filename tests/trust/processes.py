"""The product as real processes: ``journey serve`` and ``journey worker`` started by a test.

Each process runs the installed ``journey`` command (the one beside this interpreter) in a new
session (so it is stopped with its children), with its stdout and stderr in a log file and its
own working directory under the test's tmp dir: pydantic-settings reads ``.env`` from the
working directory, so a developer's ``.env`` never leaks in, and neither does any ``JOURNEY_*``
variable of the test's own environment. Settings are given as a dict of ``JOURNEY_*`` names.

    with running_processes(tmp_path) as procs:
        api = procs.serve({"JOURNEY_DATABASE_URL": pg_url})
        worker = procs.worker({"JOURNEY_DATABASE_URL": pg_url}, threads=2)
        api.wait_ready()
        worker.wait_ready()
        httpx.get(f"{api.base_url}/v1/health")
        worker.kill_hard()   # kill -9, children included

Every process a ``Processes`` started is stopped when the block (or the ``journey_processes``
fixture, once imported into a conftest) ends, even when the test fails. Waits use generous
deadlines (the machine is shared and slow): they are waits, not timed assertions, and they fail
with the process's log.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from tests.server import free_port

JOURNEY = Path(sys.executable).with_name("journey")
#: Waits for a process to come up (loading the embedding model takes a while on a busy machine).
DEADLINE_S = 120.0
#: What ``journey worker`` prints once its container is built and its threads run.
WORKER_READY = re.compile(r"(\d+) worker\(s\) on (\w+); Ctrl\+C stops\.")
#: A setting's value: a dict or list is sent as JSON, a bool as true/false, None as "".
Setting = str | int | float | bool | Path | Mapping[str, object] | list[object] | None
#: Settings every process gets unless the test gives its own.
DEFAULTS: dict[str, Setting] = {
    "JOURNEY_BRAIN": "rules",
    "JOURNEY_HOST": "127.0.0.1",
    "JOURNEY_API_KEYS": {"test-admin": ["admin"], "test-writer": ["messages:write"]},
}


def _text(value: Setting) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list):
        return json.dumps(value)
    return str(value)


def journey_env(settings: Mapping[str, Setting]) -> dict[str, str]:
    """The environment for a process: this one's without any ``JOURNEY_*``, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEY_")}
    env.update({
        "PYTHONUNBUFFERED": "1",  # the log shows each line when it is printed
        "COLUMNS": "200",  # rich does not wrap the lines a test waits for
        "NO_COLOR": "1",
        "ORT_DISABLE_TELEMETRY": "1",
        "ANONYMIZED_TELEMETRY": "False",
    })
    env.update({k: _text(v) for k, v in settings.items()})
    return env


class JourneyProcess:
    """One running ``journey`` command; ``log()`` is everything it printed so far."""

    def __init__(self, name: str, args: list[str], settings: Mapping[str, Setting],
                 home: Path, base_url: str | None = None) -> None:
        self.name = name
        self.args = args
        self.home = home
        self.log_path = home / "output.log"
        #: ``http://127.0.0.1:PORT`` for ``serve``; None for a worker
        self.base_url = base_url
        home.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                [str(JOURNEY), *args], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=journey_env(settings), cwd=home,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def fail(self, why: str) -> None:
        """Fail the test with ``why`` and this process's log."""
        pytest.fail(f"{self.name} (journey {' '.join(self.args)}): {why}\n"
                    f"--- {self.log_path} ---\n{self.log()}", pytrace=False)

    def wait_for_line(self, pattern: str | re.Pattern[str], deadline_s: float = DEADLINE_S,
                      what: str | None = None) -> re.Match[str]:
        """Wait until the log matches ``pattern`` (a regex); fail if the process exits first."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        what = what or repr(regex.pattern)
        deadline = time.monotonic() + deadline_s
        while True:
            found = regex.search(self.log())
            if found:
                return found
            if not self.alive():
                self.fail(f"exited with {self.popen.returncode} before printing {what}")
            if time.monotonic() > deadline:
                self.fail(f"printed no {what} within {deadline_s:.0f} s")
            time.sleep(0.1)

    def wait_ready(self, deadline_s: float = DEADLINE_S) -> None:
        """``serve``: ``/v1/health`` answers 200; a worker: it printed its ready line."""
        if self.base_url:
            wait_healthy(self.base_url, deadline_s, process=self)
        else:
            self.wait_for_line(WORKER_READY, deadline_s, what="its ready line")

    def _signal_group(self, sig: signal.Signals) -> None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def kill_hard(self) -> int:
        """SIGKILL the whole process group (``kill -9``, children included); the exit code."""
        self._signal_group(signal.SIGKILL)
        return self.popen.wait()

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM the process group and wait; SIGKILL if it is still running after
        ``timeout_s``. Returns the exit code."""
        if self.alive():
            self._signal_group(signal.SIGTERM)
            try:
                return self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        return self.kill_hard()

    def __repr__(self) -> str:
        return f"JourneyProcess({self.name!r}, pid={self.pid}, log={str(self.log_path)!r})"


def wait_healthy(base_url: str, deadline_s: float = DEADLINE_S,
                 process: JourneyProcess | None = None) -> None:
    """Poll ``GET {base_url}/v1/health`` until it answers 200; fail (with ``process``'s log)
    if the process exits first or nothing answers within ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    last = "no answer"
    while True:
        try:
            response = httpx.get(f"{base_url}/v1/health", timeout=5)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        if process is not None and not process.alive():
            process.fail(f"exited with {process.popen.returncode} before {base_url} was healthy")
        if time.monotonic() > deadline:
            why = f"{base_url}/v1/health not 200 within {deadline_s:.0f} s ({last})"
            if process is not None:
                process.fail(why)
            pytest.fail(why, pytrace=False)
        time.sleep(0.2)


class Processes:
    """Starts ``journey`` processes under ``root`` and stops them all in ``stop_all``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[JourneyProcess] = []

    def _home(self, name: str | None, kind: str) -> tuple[str, Path]:
        name = name or f"{kind}{len(self.started)}"
        return name, self.root / name

    def _settings(self, home: Path, settings: Mapping[str, Setting] | None) -> dict[str, Setting]:
        # each process gets its own data dir (SQLite, checkpoints, Chroma) unless the test
        # passes JOURNEY_DATA_DIR
        return {**DEFAULTS, "JOURNEY_DATA_DIR": home / "data", **(settings or {})}

    def serve(self, settings: Mapping[str, Setting] | None = None, *, port: int | None = None,
              name: str | None = None) -> JourneyProcess:
        """Start ``journey serve --port PORT`` (a free port unless given)."""
        name, home = self._home(name, "serve")
        port = port or free_port()
        merged = {**self._settings(home, settings), "JOURNEY_PORT": port}
        process = JourneyProcess(name, ["serve", "--port", str(port)], merged, home,
                                 base_url=f"http://127.0.0.1:{port}")
        self.started.append(process)
        return process

    def worker(self, settings: Mapping[str, Setting] | None = None, *, threads: int = 1,
               name: str | None = None) -> JourneyProcess:
        """Start ``journey worker --threads THREADS``."""
        name, home = self._home(name, "worker")
        process = JourneyProcess(name, ["worker", "--threads", str(threads)],
                                 self._settings(home, settings), home)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        """Stop every process started here (SIGTERM, then SIGKILL); never raises."""
        for process in reversed(self.started):
            with suppress(Exception):
                process.stop()


@contextmanager
def running_processes(root: Path) -> Iterator[Processes]:
    """A ``Processes`` under ``root`` whose processes are all stopped when the block ends."""
    processes = Processes(root)
    try:
        yield processes
    finally:
        processes.stop_all()


@pytest.fixture
def journey_processes(tmp_path: Path) -> Iterator[Processes]:
    """``running_processes(tmp_path / "processes")`` as a fixture (import it into a conftest)."""
    with running_processes(tmp_path / "processes") as processes:
        yield processes
