"""Run the real app under uvicorn on a free loopback port, in a thread, for a test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from api.app import create_app
from journey.runtime import Container
from journey.worker import Worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(container: Container, port: int | None = None) -> Iterator[str]:
    port = port or free_port()
    config = uvicorn.Config(
        create_app(container=container), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(10)


def client(base: str, key: str | None = "test-admin") -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=base, headers=headers, timeout=60)


def one_worker(container: Container, name: str = "test") -> Worker:
    """A worker over ``container`` that the test drives itself (``run_once``, :func:`drain`)."""
    return container.make_workers(1, prefix=name).workers[0]


def drain(worker: Worker) -> int:
    """Run ``worker`` until it finds nothing to do; returns how much it handled."""
    total = 0
    while handled := worker.run_once():
        total += handled
    return total
