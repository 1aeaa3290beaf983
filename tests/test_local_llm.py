"""Real turns through the embedded local model (llama.cpp serving the verified Qwen GGUF):
a schema-valid decision comes back and is executed through the policy gate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.service import InboundRequest
from journey.localllm import LocalServer, runtime_available, start_local
from journey.runtime import Container
from journey.settings import Settings
from tests.conftest import IN_CI, ContainerFactory
from tests.server import free_port

pytestmark = pytest.mark.local_llm


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'journey.sqlite'}"


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    if not runtime_available():
        message = "llama-cpp-python is not installed (make install builds it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    data = tmp_path_factory.mktemp("local-llm")
    settings = Settings(_env_file=None, data_dir=data, local_port=free_port())  # type: ignore[call-arg]
    server = start_local(settings)
    yield server
    server.stop()


def test_the_local_model_decides_and_the_gate_executes(
    local_server: LocalServer, make_container: ContainerFactory
) -> None:
    c: Container = make_container(brain="local", local_port=local_server.port,
                                  local_model_path=local_server.model)
    assert c.brain.name == "local" and c.brain_note is None
    valid = 0
    for text in ("what does the Growth plan include?", "I want to talk to a person"):
        result = c.orchestrator.handle_message(InboundRequest.model_validate(
            {"channel": "web_chat", "customer": {"web_chat_id": "wc_local"}, "text": text}
        ))
        brain = result.decision.brain
        assert brain.name in ("local", "rules")
        assert brain.llm_calls >= 1 and brain.model == "qwen2.5-coder-0.5b-instruct-q4_k_m"
        valid += brain.fallback_reason is None
        # whatever the model said, every action went through the gate with a reason
        assert result.actions and all(a.reason_codes for a in result.actions)
        assert any(a.tool == "send_message" and a.executed for a in result.actions)
    assert valid >= 1  # at least one decision came straight from the model, schema-valid
