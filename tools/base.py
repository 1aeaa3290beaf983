"""The tool contract: a typed argument model, a READ/WRITE tag, and a run function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from core.clock import Clock, IdFactory
from core.domain import Channel, Conversation, CustomerProfile
from core.effects import TurnEffects


class ToolKind(StrEnum):
    READ = "read"
    WRITE = "write"


class ToolError(Exception):
    """A tool could not do what it was asked; the message says why."""


@dataclass
class ToolContext:
    """What a tool may see: the current customer and turn, never another customer."""

    profile: CustomerProfile
    conversation: Conversation
    #: None when the tool runs outside a customer's turn (an approved action).
    inbound_channel: Channel | None
    inbound_message_id: str
    decision_id: str
    clock: Clock
    ids: IdFactory
    effects: TurnEffects
    #: A message the policy deferred (quiet hours) is delivered at this time.
    deliver_at: datetime | None = None
    #: The policy engine's reading: this message answers the customer on their channel.
    is_reply: bool = False
    #: Channel details for what a tool sends (an email's subject).
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    kind: ToolKind
    args: type[BaseModel]
    run: Callable[[Any, ToolContext], dict[str, Any]]
