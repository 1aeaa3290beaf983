"""Test doubles at the LLM boundary only: a scripted chat-completions endpoint.

``ScriptedModel`` is a real httpx transport speaking the OpenAI chat-completions format, so the
production client, request building, parsing, repair and fallback all run for real.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

Reply = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]] | Exception | int


def completion(message: dict[str, Any], prompt_tokens: int = 100, completion_tokens: int = 40
               ) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def content(obj: Any) -> dict[str, Any]:
    """A completion whose message content is ``obj`` (JSON-encoded unless a string)."""
    text = obj if isinstance(obj, str) else json.dumps(obj)
    return completion({"role": "assistant", "content": text})


def tool_calls(*calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """A completion with native tool calls ``(name, arguments)``."""
    return completion(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for i, (name, args) in enumerate(calls)
            ],
        }
    )


class ScriptedModel:
    """Replays scripted replies in order and records every request body it received."""

    def __init__(self, *script: Reply) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        if not self.script:
            return httpx.Response(500, json={"error": {"message": "script exhausted"}})
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, int):
            return httpx.Response(step, json={"error": {"message": f"scripted {step}"}})
        reply = step(body) if callable(step) else step
        return httpx.Response(200, json=reply)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))


def decision(
    intent: str = "product_question",
    stage: str = "consideration",
    reply: str | None = "Growth includes up to 25 seats.",
    actions: list[dict[str, Any]] | None = None,
    sentiment: str = "neutral",
    confidence: float = 0.9,
) -> dict[str, Any]:
    return {
        "intent": intent,
        "stage": stage,
        "sentiment": sentiment,
        "confidence": confidence,
        "reply": reply,
        "actions": actions or [],
    }
