"""Helpers shared by the bench scripts."""

from __future__ import annotations

import os
import platform
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import uvicorn
from rich.table import Table

from api.app import create_app
from core.settings import Settings
from core.stats import percentile
from journey.runtime import Container, build_container

__all__ = ["figures_table", "machine", "percentile", "scratch_postgres", "served"]


def machine() -> str:
    return f"{platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} cores"


@contextmanager
def served(settings: Settings) -> Iterator[tuple[Container, str]]:
    """The real app (and the worker threads its settings ask for) under uvicorn on a free
    loopback port: (container, base URL); stopped and closed afterwards. The abuse limits are
    off: a bench sends thousands of requests from one address with a few keys."""
    settings = settings.model_copy(update={
        "rate_limit_login": "", "rate_limit_webchat_sessions": "",
        "rate_limit_webchat_messages": "", "rate_limit_api": "",
    })
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    container = build_container(settings)
    server = uvicorn.Server(uvicorn.Config(create_app(container=container), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield container, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        container.close()


@contextmanager
def scratch_postgres(server_url: str, label: str = "bench") -> Iterator[str]:
    """A new PostgreSQL database ``jo_<label>_<random>`` on ``server_url`` for one run (its
    SQLAlchemy URL); dropped afterwards."""
    name = f"jo_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = server_url.rsplit("/", 1)[0].split("://", 1)[1]
        yield f"postgresql+psycopg://{base}/{name}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def figures_table(title: str, columns: Sequence[str], results: Sequence[dict[str, Any]],
                  skip: Sequence[str]) -> Table:
    """One row per figure, one column per run: ``results[i]`` under ``columns[i]``, every key
    but ``skip`` ("used_replies_reworded" reads "used replies reworded")."""
    table = Table(title=title)
    table.add_column("figure")
    for column in columns:
        table.add_column(column)
    for key in [k for k in results[0] if k not in skip]:
        table.add_row(key.replace("_", " "), *(str(r[key]) for r in results))
    return table
