"""What a model must answer in: the decision's JSON schema and the tool definitions (native tool
calling), built from the same pydantic models the engine validates."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field

from agent.brains.base import DecisionOutput
from core.domain import Sentiment


class RecordDecision(BaseModel):
    """Record your decision for this turn. Always call this exactly once."""

    intent: str = Field(description="The customer's intent: one of the listed intent names.")
    stage: str = Field(description="The customer's lifecycle stage after this message.")
    sentiment: Sentiment
    confidence: float = Field(ge=0, le=1)
    reply: str | None = Field(description="Reply on the current channel, or null.")


@lru_cache
def decision_schema() -> dict[str, Any]:
    return DecisionOutput.model_json_schema()


def _tool_schema(name: str, model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.get("properties", {}).pop("tool", None)
    if "required" in schema:
        schema["required"] = [r for r in schema["required"] if r != "tool"]
    schema.pop("title", None)
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": (model.__doc__ or "").strip(),
            "parameters": schema,
        },
    }


def tool_definitions() -> list[dict[str, Any]]:
    from tools import TOOLS

    return [_tool_schema("record_decision", RecordDecision)] + [
        _tool_schema(spec.name, spec.args) for spec in TOOLS.values()
    ]
