"""The knowledge base: what the bot may state, as a company's own file, and retrieval over it.

A company brings its knowledge as YAML (``JOURNEY_KNOWLEDGE_PATH``; the demo company's
``prompts/knowledge.yaml`` by default), validated with line numbers like every other file
(``journey knowledge check FILE``). Each entry's questions are embedded once, at start-up, with
the MiniLM model the vector memory uses; a message retrieves the entries whose questions are
nearest to it.

What a model is given follows the base's size. A small one (at most
``JOURNEY_KNOWLEDGE_IN_PROMPT`` entries, 40 by default) goes whole into the system prompt,
which the model server processes once and caches; a larger one would crowd the context and
bury the answer, so the model gets only the :data:`RETRIEVED_K` entries retrieved for the
message, with the message. The grounding rule checks the bot's reply against exactly what the
brain was given (:func:`given`): a fact of an entry the model never saw is not a source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.subject import SubjectReader
from memory.embeddings import MiniLMEmbedder
from prompts import path as prompt_path
from prompts.yamlcheck import YamlInvalid, read_source, validate_yaml

#: entries retrieved for a message: recorded on the decision, and what a model is handed
#: when the base is too large to give whole
RETRIEVED_K = 5
#: the default largest base that goes whole into the model's system prompt
IN_PROMPT = 40
MAX_ANSWER = 1200
#: how near an entry must be to answer a message (the rules brain's answers, and what a reply
#: the grounding rule refuses becomes)
ANSWER_SCORE = 0.45


class KnowledgeInvalid(YamlInvalid):
    kind = "knowledge base"


class EntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][\w.-]*$",
                    description="A stable id, recorded on decisions that retrieve the entry.")
    topic: str = Field("", description="The intent the entry serves (free text).")
    questions: list[str] = Field(min_length=1, description="Ways customers ask for it.")
    answer: str = Field(min_length=1, max_length=MAX_ANSWER,
                        description="The facts the bot may state, in the company's words.")

    @field_validator("questions")
    @classmethod
    def _no_empty_question(cls, value: list[str]) -> list[str]:
        if any(not q.strip() for q in value):
            raise ValueError("a question is empty")
        return value


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plans: list[str] = Field(default_factory=list)
    products: list[str] = Field(default_factory=list)


class KnowledgeFile(BaseModel):
    """A company's knowledge base as a file."""

    model_config = ConfigDict(extra="forbid")

    company: str = Field(min_length=1, description="The company's name, as the bot says it.")
    catalogue: Catalogue = Field(default_factory=Catalogue)
    entries: list[EntryIn] = Field(min_length=1)

    @field_validator("entries")
    @classmethod
    def _ids_unique(cls, value: list[EntryIn]) -> list[EntryIn]:
        seen: set[str] = set()
        for entry in value:
            if entry.id in seen:
                raise ValueError(f"the id {entry.id!r} is used twice")
            seen.add(entry.id)
        return value


def default_knowledge_path() -> Path:
    return prompt_path("knowledge.yaml")


def load_knowledge(path: Path | None = None) -> dict[str, Any]:
    """The knowledge file at ``path`` (default: the demo company's), validated; raises
    :class:`KnowledgeInvalid` with line-numbered problems."""
    path = path or default_knowledge_path()
    text = read_source(path, KnowledgeInvalid)
    return validate_yaml(text, KnowledgeFile, str(path), error=KnowledgeInvalid).model_dump()


@dataclass
class KnowledgeEntry:
    id: str
    topic: str
    answer: str


class KnowledgeBase:
    """Nearest-neighbour answers over a knowledge file (see :func:`load_knowledge`)."""

    def __init__(self, embedder: MiniLMEmbedder, data: dict[str, Any] | None = None,
                 in_prompt: int = IN_PROMPT) -> None:
        data = data or load_knowledge()
        self.embedder = embedder
        #: the largest base that goes whole into a model's system prompt
        self.in_prompt = in_prompt
        self.company: str = data.get("company", "")
        catalogue = data.get("catalogue") or {}
        #: what a conversation can be about: its plans and products (agent/subject.py)
        self.subject = SubjectReader(catalogue.get("plans", []), catalogue.get("products", []))
        self.entries: list[KnowledgeEntry] = []
        owners: list[int] = []
        texts: list[str] = []
        for i, entry in enumerate(data["entries"]):
            self.entries.append(
                KnowledgeEntry(id=entry["id"], topic=entry.get("topic", ""), answer=entry["answer"])
            )
            for question in entry["questions"]:
                owners.append(i)
                texts.append(question)
        self._owners = np.array(owners)
        self.matrix = embedder.embed(texts)

    @property
    def whole_in_prompt(self) -> bool:
        """Small enough to hand a model whole (else it gets the entries retrieved per message)."""
        return len(self.entries) <= self.in_prompt

    def lookup(self, text: str,
               min_score: float = ANSWER_SCORE) -> tuple[KnowledgeEntry, float] | None:
        """The entry nearest to ``text``, if it is at least ``min_score`` near."""
        [(entry, score)] = self.search(text, k=1)
        return (entry, score) if score >= min_score else None

    def search(self, text: str, k: int = RETRIEVED_K) -> list[tuple[KnowledgeEntry, float]]:
        """The ``k`` entries nearest to ``text`` (each by its nearest question), best first."""
        sims = self.matrix @ self.embedder.embed_one(text)
        best = np.full(len(self.entries), -1.0)
        np.maximum.at(best, self._owners, sims)
        order = np.argsort(-best)[:k]
        return [(self.entries[int(i)], float(best[i])) for i in order]

    def given(self, retrieved: Sequence[tuple[KnowledgeEntry, float]]) -> list[KnowledgeEntry]:
        """What a brain is given for a message: the whole base when it is small, else the
        entries ``retrieved`` for the message (the grounding rule's knowledge sources)."""
        return list(self.entries) if self.whole_in_prompt else [e for e, _ in retrieved]

    def facts(self, entries: Sequence[KnowledgeEntry] | None = None) -> str:
        """Entries (default: all) as compact lines, for a model's prompt."""
        return "\n".join(f"- [{e.id}] {e.answer}"
                         for e in (self.entries if entries is None else entries))
