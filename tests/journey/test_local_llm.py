"""Real turns through the embedded local model (llama.cpp serving the verified Qwen GGUF):
a schema-valid decision comes back and is executed through the policy gate.

Nothing here depends on how fast the machine is: on a busy one, loading the model takes long and
the first turn waits behind the start-up warm-up (the system prompt), so with the product's
request timeout a turn fell back to the rules brain and ``valid >= 1`` failed. The test waits as
long as it takes (``PATIENCE_S``) and asserts only what the model decided.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings, local_runtime_available
from journey.localllm import LocalServer, assemble
from journey.runtime import Container
from journey.turns import InboundRequest
from tests.conftest import IN_CI, ContainerFactory
from tests.server import free_port

pytestmark = pytest.mark.local_llm

#: How long loading the model or one request may take: a hang, not a slow machine, ends it.
PATIENCE_S = 3600.0


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'journey.sqlite'}"


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    if not local_runtime_available():
        message = "llama-cpp-python is not installed (make install builds it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    data = tmp_path_factory.mktemp("local-llm")
    settings = Settings(_env_file=None, data_dir=data, local_port=free_port())  # type: ignore[call-arg]
    # what start_local does, with the test's patience for loading the model
    server = LocalServer(
        assemble(data / "models"), port=settings.local_port, threads=settings.local_threads,
        context=settings.local_context, log_file=data / "local-llm.log",
    )
    server.start(timeout_s=PATIENCE_S)
    yield server
    server.stop()


def test_the_local_model_writes_the_reply_and_the_gate_executes(
    local_server: LocalServer, make_container: ContainerFactory
) -> None:
    """The embedded model's role is ``write`` by default: the rules decide, the model writes an
    answer in one grammar-constrained call (always valid JSON), and a request for a person is
    the company's own text (no call)."""
    c: Container = make_container(brain="local", local_port=local_server.port,
                                  local_model_path=local_server.model,
                                  llm_timeout_s=PATIENCE_S)
    assert c.brain.name == "local" and c.brain_note is None
    calls = {}
    for text in ("what does the Growth plan include?", "I want to talk to a person"):
        result = c.orchestrator.handle_message(InboundRequest.model_validate(
            {"channel": "web_chat", "customer": {"web_chat_id": "wc_local"}, "text": text}
        ))
        brain = result.decision.brain
        assert (brain.name, brain.role, brain.repaired) == ("local", "write", False)
        assert brain.model == "qwen2.5-coder-0.5b-instruct-q4_k_m"
        calls[text] = brain.llm_calls
        # whatever the model said, every action went through the gate with a reason
        assert result.actions and all(a.reason_codes for a in result.actions)
        assert any(a.tool == "send_message" and a.executed for a in result.actions)
        if brain.llm_calls:
            # the grammar keeps the output valid JSON: the reply is used or, if unusable, the
            # draft goes out, never a parse failure
            assert "not the JSON asked for" not in (brain.fallback_reason or "")
    assert calls == {"what does the Growth plan include?": 1, "I want to talk to a person": 0}
