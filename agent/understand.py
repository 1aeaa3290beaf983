"""Understanding a message without an LLM: intent by nearest neighbour over labelled examples,
the customer's mood (:mod:`agent.sentiment`), the message's language (:mod:`agent.language`),
and the entities a sales team wants (seats, requirements). Answers come from the knowledge base
(:mod:`agent.knowledge`).

The examples are data in ``prompts/intents.yaml``, embedded once with the same MiniLM model the
vector memory uses.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import numpy as np
from number_parser import parse as parse_numbers
from pydantic import BaseModel

from agent.language import DEFAULT_LANGUAGE, human_request_in, language_of
from agent.sentiment import mood_of
from agent.subject import SubjectReader
from core.domain import Sentiment
from memory.embeddings import MiniLMEmbedder
from prompts import load_yaml

#: Neighbours that vote on an intent, each with its similarity to the message raised to
#: :data:`VOTE_POWER`: a close paraphrase of one example (0.9) outweighs two loosely related
#: examples of another intent (0.6 each; 0.81 to 0.72), which it did not with plain
#: similarities (0.9 to 1.2), all of them between about 0.4 and 0.9.
K_NEIGHBOURS = 5
VOTE_POWER = 2
#: intents a follow-up's subject never changes: an opt-out or a request for a person is read
#: from the words as written
KEEP_AS_WRITTEN = ("opt_out", "human_request")
#: intents a negative message cannot have: it is a complaint ("not great at all" is no praise)
NOT_WHEN_NEGATIVE = ("praise_referral", "small_talk")
#: intents of a question that a clearly upset message (its mood at or under :data:`UPSET`)
#: is not: "this is unacceptable, we were charged for seats we never used" is no pricing
#: question
QUESTIONS = ("pricing", "product_question", "demo_request", "off_topic")
UPSET = -0.4
#: the mood markers (agent/sentiment.py) that say "upset" whatever the score
FRUSTRATION_PHRASES = frozenset({"thanks_for_nothing", "waste", "disbelief", "fed_up"})


class IntentScore(BaseModel):
    intent: str
    score: float


class Signals(BaseModel):
    """What code (not the model) reads off the message; hints for the brain, facts for policy."""

    intents: list[IntentScore]
    sentiment: Sentiment
    seats: int | None = None
    requirements: list[str] = []
    opt_out_keyword: bool = False
    #: the reading behind ``sentiment`` (-1 to 1) and the frustration markers it found
    sentiment_score: float = 0.0
    mood: list[str] = []
    #: how many contacts the customer says this is ("third time": 3; nothing said: 1)
    claimed_contacts: int = 1
    #: the message's language (ISO 639-1; :mod:`agent.language`)
    language: str = DEFAULT_LANGUAGE
    #: what the conversation is about (plan, product, order, seats: :mod:`agent.subject`), what
    #: this message refers back to of it, and the message with that made explicit (what the
    #: intent and the knowledge are looked up with; None: the message as written)
    subject: dict[str, Any] = {}
    referred: dict[str, Any] = {}
    resolved: str | None = None

    @property
    def intent(self) -> str:
        return self.intents[0].intent

    @property
    def confidence(self) -> float:
        return self.intents[0].score

    def best_other_than(self, *excluded: str) -> str | None:
        """The best intent not in ``excluded`` that a neighbour voted for: the topic of "a
        person about my invoice" is billing; "human please" has none (an intent no neighbour
        voted for is only last in the ranking, not a topic that picks the sales queue)."""
        return next((s.intent for s in self.intents if s.intent not in excluded and s.score > 0),
                    None)


class IntentClassifier:
    """k-nearest-neighbour intent classifier over ``prompts/intents.yaml``."""

    def __init__(self, embedder: MiniLMEmbedder, data: dict[str, Any] | None = None) -> None:
        data = data or load_yaml("intents.yaml")
        self.embedder = embedder
        self.labels: list[str] = []
        texts: list[str] = []
        self.descriptions: dict[str, str] = {}
        for intent, spec in data["intents"].items():
            self.descriptions[intent] = spec.get("description", "")
            for example in spec["examples"]:
                self.labels.append(intent)
                texts.append(example)
        self.intents = list(self.descriptions)
        self.matrix = embedder.embed(texts)
        self._label_idx = np.array([self.intents.index(lbl) for lbl in self.labels])

    def rank(self, text: str) -> list[IntentScore]:
        """Every intent, best first, scored by a similarity-weighted vote of the neighbours."""
        sims = self.matrix @ self.embedder.embed_one(text)
        top = np.argsort(-sims)[:K_NEIGHBOURS]
        votes: dict[str, float] = defaultdict(float)
        best: dict[str, float] = {}
        for idx in top:
            label = self.labels[idx]
            votes[label] += max(float(sims[idx]), 0.0) ** VOTE_POWER
        # every intent also gets its single best similarity, so the ranking is complete
        per_intent = np.full(len(self.intents), -1.0)
        np.maximum.at(per_intent, self._label_idx, sims)
        for i, intent in enumerate(self.intents):
            best[intent] = float(per_intent[i])
        total = sum(votes.values()) or 1.0
        ranked = sorted(
            self.intents, key=lambda name: (votes.get(name, 0.0), best[name]), reverse=True
        )
        top_sim = float(sims[top[0]])
        out = []
        for name in ranked:
            share = votes.get(name, 0.0) / total
            # confidence: the vote share, damped when even the nearest example is far away
            out.append(IntentScore(intent=name, score=round(share * min(1.0, top_sim / 0.6), 4)))
        return out


_OPT_OUT = re.compile(
    r"^\s*(stop|stopall|unsubscribe|cancel|end|quit|opt[\s-]?out)\s*[.!]*\s*$|"
    r"\b(unsubscribe me|stop (messaging|texting|emailing|contacting) me|"
    r"remove me from (your|the) (list|mailing list))\b",
    re.IGNORECASE,
)
_NUMBER = r"\d{1,3}(?:[,.]\d{3})+(?![.,]?\d)|\d+(?:\.\d+)?"
_SCALE = r"k|thousand|m|million"
_SEATS = re.compile(
    rf"(?<![\w.,])({_NUMBER})\s*({_SCALE})?\b"
    rf"(?:\s*(?:-|–|to|or)\s*(?:{_NUMBER})\s*({_SCALE})?\b)?"
    r"\s*\+?\s*(?:seats?|users?|licen[cs]es?|agents?|people|employees|reps|staff|members)\b",
    re.IGNORECASE,
)
_SCALES = {"k": 1_000, "thousand": 1_000, "m": 1_000_000, "million": 1_000_000}
_SEAT_WORD = re.compile(r"\b(seats?|users?|licen[cs]es?|agents?|people|employees|reps|staff|"
                        r"members)\b", re.IGNORECASE)
_REQUIREMENTS = {
    "SSO": re.compile(r"\b(sso|single sign[- ]on)\b", re.I),
    "SAML": re.compile(r"\bsaml\b", re.I),
    "SCIM": re.compile(r"\bscim\b", re.I),
    "SOC 2": re.compile(r"\bsoc ?2\b", re.I),
    "GDPR": re.compile(r"\bgdpr\b", re.I),
    "API": re.compile(r"\bapi\b", re.I),
    "quote": re.compile(r"\b(quote|quotation|proposal)\b", re.I),
    "contract": re.compile(r"\b(contract|msa|procurement|purchase order|po)\b", re.I),
    "data residency": re.compile(r"\bdata residency\b", re.I),
}


def seats_in(text: str) -> int | None:
    """The seats (users, licences, agents, people…) the customer names, or None.

    Numbers in words are read ("two hundred users", also in other languages, by
    ``number-parser``), "1.5k" is 1,500 and "1,200" or "1.200" is 1,200; of a range
    ("25-30 agents", "1-2k users") the lower end is kept. A number that is not a whole count
    ("2.5 users") is left out: never guessed, never inflated."""
    if not _SEAT_WORD.search(text):
        return None  # no seats named: spare the number words' parser (most messages)
    match = _SEATS.search(parse_numbers(text))
    if not match:
        return None
    number, scale, range_scale = match.group(1), match.group(2), match.group(3)
    scale = (scale or range_scale or "").lower()
    if re.fullmatch(r"\d{1,3}(?:[,.]\d{3})+", number):
        value = float(number.replace(",", "").replace(".", ""))
    else:
        value = float(number)
    value *= _SCALES.get(scale, 1)
    return int(value) if value.is_integer() and 0 < value < 10_000_000 else None


def requirements_in(text: str) -> list[str]:
    return [name for name, pattern in _REQUIREMENTS.items() if pattern.search(text)]


def _first(ranked: list[IntentScore], intent: str, score: float) -> list[IntentScore]:
    """``ranked`` with ``intent`` moved to the top at ``score`` (a reading code is sure of)."""
    return [IntentScore(intent=intent, score=score), *(s for s in ranked if s.intent != intent)]


def understand(text: str, classifier: IntentClassifier, *, subject: dict[str, Any] | None = None,
               reader: SubjectReader | None = None) -> Signals:
    """What code reads off ``text``; with the conversation's ``subject``, a follow-up that
    refers back is classified with it made explicit (every other reading is of the text as
    written: an opt-out is "stop it", not "stop it (Growth plan)")."""
    resolved, referred = (reader.resolve(text, subject) if reader and subject else (text, {}))
    ranked = classifier.rank(text)
    if referred and ranked[0].intent in KEEP_AS_WRITTEN:
        resolved, referred = text, {}  # "stop it" is not about the Starter plan
    elif referred:
        ranked = classifier.rank(resolved)
    mood = mood_of(text)
    opt_out = bool(_OPT_OUT.search(text))
    if opt_out and ranked[0].intent != "opt_out":
        # an explicit opt-out keyword decides, whatever the neighbours say
        ranked = _first(ranked, "opt_out", 1.0)
    upset = mood.score <= UPSET or bool(set(mood.markers) & FRUSTRATION_PHRASES)
    if not opt_out and mood.sentiment == "negative" and (
            ranked[0].intent in NOT_WHEN_NEGATIVE or ranked[0].intent == "complaint"
            or (upset and ranked[0].intent in QUESTIONS)):
        # "This is not great at all", "Thanks for nothing, the outage cost us a day": the
        # neighbours hear "great" or "cost"; the mood says it is a complaint, and a complaint
        # the mood confirms is no longer a doubtful one
        ranked = _first(ranked, "complaint", max(ranked[0].score, 0.5))
    language = language_of(text)
    asked_in = human_request_in(text)
    if asked_in is not None:
        # "quiero hablar con una persona": the examples are English, the phrases decide; and in
        # English a request for a person wins over its topic ("a real person about my invoice")
        language = language if language != DEFAULT_LANGUAGE else asked_in
        if not opt_out:  # decided by the phrases: sure, whatever the neighbours' share
            ranked = _first(ranked, "human_request", 1.0)
    return Signals(
        intents=ranked,
        sentiment=mood.sentiment,
        sentiment_score=mood.score,
        mood=mood.markers,
        claimed_contacts=mood.claimed_contacts,
        language=language,
        subject=subject or {},
        referred=referred,
        resolved=resolved if referred else None,
        seats=seats_in(text),
        requirements=requirements_in(text),
        opt_out_keyword=opt_out,
    )
