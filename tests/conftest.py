"""Shared fixtures: real SQLite and PostgreSQL stores, real Chroma, the real embedder.

Only the LLM is scripted (tests/fakes.py). Real model requests are blocked in every test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent.brains import llm
from agent.knowledge import KnowledgeBase
from agent.understand import IntentClassifier
from core.clock import FixedClock, sequential_ids
from core.settings import Settings
from journey.runtime import Container, build_container
from memory.embeddings import MiniLMEmbedder, get_embedder

#: Server used for the PostgreSQL tests; each test gets a fresh database on it.
PG_ADMIN_URL = os.environ.get(
    "JOURNEY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True)
def _block_model_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm, "ALLOW_MODEL_REQUESTS", False)


@pytest.fixture(scope="session")
def embedder() -> MiniLMEmbedder:
    return get_embedder()


@pytest.fixture(scope="session")
def classifier(embedder: MiniLMEmbedder) -> IntentClassifier:
    return IntentClassifier(embedder)


@pytest.fixture(scope="session")
def knowledge(embedder: MiniLMEmbedder) -> KnowledgeBase:
    return KnowledgeBase(embedder)


def _pg_available() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


@pytest.fixture(scope="session")
def pg_server() -> str:
    problem = _pg_available()
    if problem:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI and unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {problem}")
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    name = f"jo_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = pg_server.rsplit("/", 1)[0]
    yield f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'journey.sqlite'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 3, 15, 0, tzinfo=UTC))


ContainerFactory = Callable[..., Container]


@pytest.fixture
def make_container(
    tmp_path: Path,
    database_url: str,
    clock: FixedClock,
    embedder: MiniLMEmbedder,
    classifier: IntentClassifier,
    knowledge: KnowledgeBase,
) -> Iterator[ContainerFactory]:
    """Build the real service container on this test's database, Chroma and clock."""
    built: list[Container] = []

    def make(brain: str = "rules", llm_http_client: Any = None, **overrides: Any) -> Container:
        overrides_knowledge = overrides.pop("knowledge", None)  # a test's own knowledge base
        # a second container on the same database (a restart) needs ids the first did not use
        overrides_ids = overrides.pop("ids", None)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=overrides.pop("data_dir", tmp_path / f"data{len(built)}"),
            database_url=database_url,
            brain=brain,
            llm_base_url=overrides.pop("llm_base_url", "https://llm.example.test/v1"),
            api_keys=overrides.pop(
                "api_keys",
                {"test-admin": ["admin"], "test-writer": ["messages:write"]},
            ),
            # no worker threads unless a test asks: it drives workers itself
            workers=overrides.pop("workers", 0),
            **overrides,
        )
        container = build_container(
            settings,
            clock=clock,
            ids=overrides_ids or sequential_ids(),
            embedder=embedder,
            classifier=classifier,
            # a test's JOURNEY_KNOWLEDGE_PATH is read as the server reads it
            knowledge=overrides_knowledge or (None if settings.knowledge_path else knowledge),
            llm_http_client=llm_http_client,
        )
        built.append(container)
        return container

    yield make
    for container in built:
        container.close()
