"""The small model's job: the rules decide, the model writes the reply from the facts.

A 0.5B model running on two cores cannot be trusted with the whole decision (intent, stage,
tools): measured through the API, half its decisions fell back to the rules after two calls, and
the repair call never fixed one. What it can do is phrase an answer. So with the embedded model
(``JOURNEY_LLM_ROLE=write``, the default for it) the rules brain decides — the classifier, the
rules table, the policy after it — and the model is asked **once** to write the reply from the
rules' draft and the knowledge entry the draft answers from, its output constrained by a JSON
schema (llama.cpp turns it into a grammar, so it is always valid JSON: there is no repair
call). A reply that is empty, too long, only repeats the customer's words, or strays from the
draft (its MiniLM similarity to it under :data:`MIN_SIMILARITY`: a small model states wrong
things that no checkable claim shows, "Yes, it includes WhatsApp." of a plan without it) is not
used: the draft goes out (``fallback_reason`` says why). Only answers are written this way; an
opt-out confirmation, a handoff's acknowledgement or a language handover is the company's own
text.
What the model writes still passes the policy engine, grounding included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import openai

from agent.brains.base import Brain, BrainDecision, BrainInput
from agent.brains.llm import LLMBrain, ModelRequestsBlocked, same_words
from agent.knowledge import KnowledgeBase
from agent.language import DEFAULT_LANGUAGE, languages
from core.domain import EscalateToHuman
from prompts import render_file

#: the reply's schema: one string (llama.cpp compiles it to a grammar)
REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"reply": {"type": "string", "minLength": 1, "maxLength": 700}},
    "required": ["reply"],
    "additionalProperties": False,
}
#: the intents whose reply is an answer the model may phrase
WRITTEN = frozenset({"product_question", "pricing", "support_problem", "billing", "small_talk"})
#: knowledge entries handed to the model, and how near they must be: the one the draft
#: answers from (more confused the 0.5B model into answering from the wrong one)
FACTS_K = 1
FACTS_MIN_SCORE = 0.3
MAX_REPLY = 700
#: how close (cosine, MiniLM) the model's reply must stay to the draft: a small model that
#: wanders ("Yes, it includes WhatsApp." for a plan without it: 0.37) is not used
MIN_SIMILARITY = 0.75


@dataclass
class WriterBrain:
    """``rules`` decides; ``llm`` (its client, model and mode) writes the reply."""

    llm: LLMBrain
    rules: Brain
    knowledge: KnowledgeBase
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or self.llm.name

    def system_prompt(self) -> str:
        return render_file("writer_system.md", company=self.knowledge.company)

    def warm_up(self, *_: Any) -> None:
        """Have the server process the system prompt once (llama.cpp caches the prefix)."""
        self.llm.warm_up_with(self.system_prompt())

    def decide(self, data: BrainInput) -> BrainDecision:
        decided = self.rules.decide(data)
        info = decided.info.model_copy(update={
            "name": "local" if self.llm.name == "local" else "openai",
            "model": self.llm.model, "role": "write"})
        output = decided.output
        if (not output.reply or output.intent not in WRITTEN or data.opt_out
                or any(isinstance(a, EscalateToHuman) for a in output.actions)):
            return BrainDecision(output=output, info=info, rejected=decided.rejected)
        messages = [{"role": "system", "content": self.system_prompt()},
                    {"role": "user", "content": self.turn_prompt(data, output.reply)}]
        try:
            message = self.llm.request_json(messages, info, "reply", REPLY_SCHEMA)
            reply = str(json.loads(message.content or "")["reply"]).strip()
        except (openai.APIError, httpx.HTTPError, ModelRequestsBlocked) as exc:
            info.fallback_reason = f"{type(exc).__name__}: {exc}"[:500]
            return BrainDecision(output=output, info=info, rejected=decided.rejected)
        except (ValueError, KeyError, TypeError) as exc:
            info.fallback_reason = f"the reply is not the JSON asked for: {exc}"[:500]
            return BrainDecision(output=output, info=info, rejected=decided.rejected)
        problem = _unusable(reply, data.text) or self._strays(reply, output.reply)
        if problem:
            info.fallback_reason = f"the model's reply was not used: {problem}"
            return BrainDecision(output=output, info=info, rejected=decided.rejected)
        return BrainDecision(output=output.model_copy(update={"reply": reply}), info=info,
                             rejected=decided.rejected)

    def _strays(self, reply: str, draft: str) -> str | None:
        a, b = self.knowledge.embedder.embed([reply, draft])
        similarity = float(a @ b)
        if similarity < MIN_SIMILARITY:
            return f"it strays from the answer (similarity {similarity:.2f} < {MIN_SIMILARITY})"
        return None

    def turn_prompt(self, data: BrainInput, draft: str) -> str:
        found = [(e, s) for e, s in self.knowledge.search(data.signals.resolved or data.text,
                                                          k=FACTS_K) if s >= FACTS_MIN_SCORE]
        facts = "\n".join(f"- {e.answer}" for e, _ in found) or "- (none for this message)"
        language = ""
        if data.signals.language != DEFAULT_LANGUAGE:
            known = languages().get(data.signals.language)
            language = f"The customer writes in {known.name if known else data.signals.language}.\n"
        return render_file("writer_turn.md", facts=facts, message=data.text, draft=draft,
                           language=language)


def _unusable(reply: str, message: str) -> str | None:
    if not reply:
        return "it is empty"
    if len(reply) > MAX_REPLY:
        return f"it is {len(reply)} characters long"
    if same_words(reply, message):
        return "it repeats the customer's message"
    return None
