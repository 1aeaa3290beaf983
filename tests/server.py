"""Run the real app under uvicorn on a free loopback port, in a thread, for a test."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from api.app import create_app
from journey.runtime import Container
from journey.worker import Worker

#: under pytest-xdist, each worker's ports for servers in other processes: a block of its own
#: below the kernel's ephemeral range, which ``bind(0)`` and outgoing connections draw from
PORT_BLOCKS = range(12_000, 32_000, 2_000)


def free_port() -> int:
    """A port free now, for a server in another process (SMTP, ``journey serve``, ``chroma
    run``). Under pytest-xdist it comes from this worker's own block, so a test running in
    parallel cannot be given the same port before the server binds it; in this process, bind
    with :func:`bound_socket` instead."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    if worker.startswith("gw") and worker[2:].isdigit():
        start = PORT_BLOCKS[int(worker[2:]) % len(PORT_BLOCKS)]
        for port in random.sample(range(start, start + PORT_BLOCKS.step), 200):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bound_socket() -> socket.socket:
    """A loopback socket bound to a free port and kept: nobody else (another test running in
    parallel) can take the port between choosing it and serving on it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def running_server(container: Container, port: int | None = None,
                   sock: socket.socket | None = None) -> Iterator[str]:
    """The app on ``sock`` (or ``port``; by default a socket of :func:`bound_socket`)."""
    if port is None and sock is None:
        sock = bound_socket()
    if sock is not None:
        port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        create_app(container=container), host="127.0.0.1", port=port or 0, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock] if sock else None},
                              daemon=True)
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
        if sock is not None:
            sock.close()


def client(base: str, key: str | None = "test-admin") -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=base, headers=headers, timeout=60)


def turn(base: str, text: str, web_chat_id: str = "wc_test") -> dict[str, Any]:
    """A web-chat message through ``POST /v1/messages``; the turn it answered (200 asserted)."""
    response = client(base).post("/v1/messages", json={
        "channel": "web_chat", "customer": {"web_chat_id": web_chat_id}, "text": text})
    assert response.status_code == 200, response.text
    answered: dict[str, Any] = response.json()
    return answered


def one_worker(container: Container, name: str = "test") -> Worker:
    """A worker over ``container`` that the test drives itself (``run_once``, :func:`drain`)."""
    return container.make_workers(1, prefix=name).workers[0]


def drain(worker: Worker) -> int:
    """Run ``worker`` until it finds nothing to do; returns how much it handled."""
    total = 0
    while handled := worker.run_once():
        total += handled
    return total
