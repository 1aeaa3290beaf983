"""What the hijacked model answers, whichever rule it obeys: a plan (reply, tool calls, the
recorded decision), a malformed call, and what it read out of the request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Plan:
    """What the hijacked model answers: a reply, tool calls, and the recorded decision."""

    reply: str | None
    actions: list[Any] = field(default_factory=list)
    intent: str = "off_topic"
    stage: str | None = None  # None: the customer's current stage


@dataclass
class Raw:
    """A malformed call: its tool-call form (name, argument text) and its JSON-mode form."""

    name: str
    arguments: str
    item: Any


@dataclass
class Ctx:
    text: str
    channel: str
    prompt: str


def send(channel: str, text: str, purpose: str = "service", **extra: Any) -> dict[str, Any]:
    return {"tool": "send_message", "channel": channel, "text": text, "purpose": purpose, **extra}
