"""Any OpenAI-compatible server by settings alone: a real local HTTP server that speaks the
chat-completions API with native tool calls, reached through the production client."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from journey.turns import InboundRequest
from tests import fakes
from tests.conftest import ContainerFactory
from tests.providers import reply_json


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'journey.sqlite'}"


class ChatCompletionsStub(BaseHTTPRequestHandler):
    """Answers every chat completion with native tool calls (like OpenAI or vLLM would)."""

    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                    "body": body})
        reply = fakes.tool_calls(
            ("record_decision", {"intent": "pricing", "stage": "consideration",
                                 "sentiment": "neutral", "confidence": 0.9,
                                 "reply": "Growth is $399/month for up to 25 seats."}),
            ("update_crm", {"note": "asked for Growth pricing"}),
        )
        reply_json(self, 200, reply)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[str]:
    ChatCompletionsStub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChatCompletionsStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_a_compatible_server_with_native_tools_needs_only_settings(
    make_container: ContainerFactory, stub: str
) -> None:
    c = make_container(brain="openai", llm_base_url=stub, llm_mode="tools",
                       llm_api_key="stub-key", llm_model="stub-model")
    result = c.orchestrator.handle_message(InboundRequest.model_validate(
        {"channel": "web_chat", "customer": {"web_chat_id": "wc_stub"},
         "text": "how much is Growth?"}
    ))
    [call] = ChatCompletionsStub.requests
    assert call["path"] == "/v1/chat/completions"
    assert call["auth"] == "Bearer stub-key"
    assert call["body"]["model"] == "stub-model" and call["body"]["tool_choice"] == "required"
    assert result.decision.brain.name == "openai" and result.decision.brain.llm_calls == 1
    assert result.reply == "Growth is $399/month for up to 25 seats."
    assert [(a.tool, a.executed) for a in result.actions] == [
        ("send_message", True), ("update_crm", True)
    ]
