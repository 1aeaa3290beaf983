"""The runtime context: long-lived services a turn uses. Passed to nodes, never checkpointed."""

from __future__ import annotations

from dataclasses import dataclass

from agent.brains.base import Brain
from agent.knowledge import KnowledgeBase
from agent.understand import IntentClassifier
from core.clock import Clock, IdFactory
from core.ports import TurnStore, VectorMemory
from policy.journeys import JourneysProvider
from policy.lifecycle import Lifecycle
from policy.loader import PolicyProvider


@dataclass
class TurnServices:
    store: TurnStore
    memory: VectorMemory
    classifier: IntentClassifier
    brain: Brain
    rules_brain: Brain
    lifecycle: Lifecycle
    clock: Clock
    ids: IdFactory
    policy: PolicyProvider
    history_k: int = 6
    recent_limit: int = 8
    #: journeys as data (proactive turns); None: no journeys
    journeys: JourneysProvider | None = None
    #: the company's name, for templates
    company: str = ""
    #: the knowledge base the brains answer from: the grounding rule's company facts
    knowledge: KnowledgeBase | None = None
