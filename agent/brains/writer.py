"""The small model's job: the rules decide, the model writes the reply from the facts.

A 0.5B model running on two cores cannot be trusted with the whole decision (intent, stage,
tools): measured through the API, half its decisions fell back to the rules after two calls, and
the repair call never fixed one. What it can do is phrase an answer. So with the embedded model
(``JOURNEY_LLM_ROLE=write``, the default for it) the rules brain decides — the classifier, the
rules table, the policy after it — and the model is asked **once** to say the rules' draft (for
an answer, the retrieved knowledge entry itself) so that it replies to the customer's message,
its output constrained by a JSON schema (llama.cpp turns it into a grammar, so it is always
valid JSON: there is no repair call). Before the turn it sees the examples of
``prompts/writer_examples.yaml`` as earlier turns of the chat: a 0.5B model copies the form of
its examples far better than it follows instructions, and copies their facts too (examples of
another company put "free shipping" into Acme's prices), so the examples are the company's own.

What it writes is used only if it says what the draft says. Not used (the draft goes out,
``fallback_reason`` says why and quotes the model): an empty or too long reply, one that only
repeats the customer's words, one that opens with a verdict ("yes", "no", "sure") the draft
does not give, one with a sentence about a plan or product that is not the draft's ("yes,
WhatsApp is part of the Starter plan", measured, before the draft word for word), and one that
strays from the draft (MiniLM similarity under :data:`MIN_SIMILARITY`). Measured on the
labelled bench (bench/understanding.py), the model's reply was used for 93% of the turns it
wrote, but the examples that achieve that make it keep the draft's words: when they showed it
shorter, focused answers, it reworded a fifth of its replies and some of those were subtly
wrong ("Starter and Growth … include up to 3 seats") with no check able to tell. A 0.5B model
is safe as a copy editor, not as an author (README: which model gets which role).
Only answers are written this way; an opt-out confirmation, a handoff's acknowledgement or a
language handover is the company's own text.
What the model writes still passes the policy engine, grounding included.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai

from agent.brains.base import Brain, BrainDecision, BrainInput
from agent.brains.llm import LLMBrain, ModelRequestsBlocked, same_words
from agent.knowledge import KnowledgeBase
from agent.language import DEFAULT_LANGUAGE, languages
from core.domain import EscalateToHuman
from prompts import load_yaml, render_file

#: the reply's schema: one string (llama.cpp compiles it to a grammar)
REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"reply": {"type": "string", "minLength": 1, "maxLength": 700}},
    "required": ["reply"],
    "additionalProperties": False,
}
#: the intents whose reply is an answer the model may phrase
WRITTEN = frozenset({"product_question", "pricing", "support_problem", "billing", "small_talk"})
MAX_REPLY = 700
#: how close (cosine, MiniLM) the model's reply must stay to the draft: a small model that
#: wanders ("Yes, it includes WhatsApp." for a plan without it: 0.37) is not used
MIN_SIMILARITY = 0.75
#: the share of a sentence's words that may be new to the draft when it names a plan or
#: product ("Growth is $399/month and includes up to 25 seats": 1 of 10, from a price draft)
NEW_WORDS = 0.15
_WORD = re.compile(r"[\w$%/.-]*\w")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|;\s+")
#: a reply that opens with a verdict: the draft must open with the same one
_VERDICT = re.compile(r"^\W*(yes|yeah|yep|no|nope|sure|absolutely|of course|certainly|"
                      r"unfortunately not)\b", re.IGNORECASE)


@dataclass
class WriterBrain:
    """``rules`` decides; ``llm`` (its client, model and mode) writes the reply."""

    llm: LLMBrain
    rules: Brain
    knowledge: KnowledgeBase
    name: str = ""
    #: the words of the plans' and products' names (a sentence naming one is a claim), and
    #: those with the company's (words that keep their capital): from the knowledge base, once
    _catalogue: frozenset[str] = field(init=False)
    _names: frozenset[str] = field(init=False)
    _prefix: list[dict[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.name or self.llm.name
        subject = self.knowledge.subject
        self._catalogue = frozenset(
            w for name in (*subject.plans.values(), *subject.products.values())
            for w in _WORD.findall(name.casefold()))
        self._names = self._catalogue | set(_WORD.findall(self.knowledge.company.casefold()))
        self._prefix = self._render_prefix()

    def system_prompt(self) -> str:
        return render_file("writer_system.md", company=self.knowledge.company)

    def prefix(self) -> list[dict[str, str]]:
        """The same first messages every turn: the system prompt, then the examples of
        ``prompts/writer_examples.yaml`` as earlier turns (a small model copies their form)."""
        return self._prefix

    def _render_prefix(self) -> list[dict[str, str]]:
        out = [{"role": "system", "content": self.system_prompt()}]
        for example in load_yaml("writer_examples.yaml")["examples"]:
            out.append({"role": "user", "content": _turn(example["message"], example["draft"])})
            out.append({"role": "assistant",
                        "content": json.dumps({"reply": example["reply"]}, ensure_ascii=False)})
        return out

    def warm_up(self, *_: Any) -> None:
        """Have the server process the prefix once (llama.cpp caches it)."""
        self.llm.warm_up_messages(self.prefix())

    def decide(self, data: BrainInput) -> BrainDecision:
        decided = self.rules.decide(data)
        info = decided.info.model_copy(update={
            "name": "local" if self.llm.name == "local" else "openai",
            "model": self.llm.model, "role": "write"})
        output = decided.output
        if (not output.reply or output.intent not in WRITTEN or data.opt_out
                or any(isinstance(a, EscalateToHuman) for a in output.actions)):
            return BrainDecision(output=output, info=info, rejected=decided.rejected)
        hello, draft = split_greeting(output.reply)
        messages = [*self.prefix(), {"role": "user", "content": self.turn_prompt(data, draft)}]
        try:
            message = self.llm.request_json(messages, info, "reply", REPLY_SCHEMA)
            # strict=False: a raw newline inside the string is the grammar's, not an error
            reply = str(json.loads(message.content or "", strict=False)["reply"]).strip()
        except (openai.APIError, httpx.HTTPError, ModelRequestsBlocked) as exc:
            info.fallback_reason = f"{type(exc).__name__}: {exc}"[:500]
            return BrainDecision(output=output, info=info, rejected=decided.rejected)
        except (ValueError, KeyError, TypeError) as exc:
            info.fallback_reason = f"the reply is not the JSON asked for: {exc}"[:500]
            return BrainDecision(output=output, info=info, rejected=decided.rejected)
        problem = (_unusable(reply, data.text) or _adds_a_verdict(reply, draft)
                   or self._says_more(reply, draft) or self._strays(reply, output.reply))
        if problem:
            # what it wrote is kept with the reason: the decision shows what was not sent
            info.fallback_reason = (f"the model's reply was not used: {problem}: "
                                    f"{reply[:200]!r}")[:500]
            return BrainDecision(output=output, info=info, rejected=decided.rejected)
        if hello and not _GREETS.match(reply):
            reply = f"{hello} {_lower_first(reply, self._names)}"
        return BrainDecision(output=output.model_copy(update={"reply": reply}), info=info,
                             rejected=decided.rejected)

    def _says_more(self, reply: str, draft: str) -> str | None:
        """A sentence about a plan or product that is not the draft's: the model may change
        the tone, not what is said about the catalogue ("WhatsApp is part of the Starter
        plan", of a plan without it, is otherwise close to a draft that names both)."""
        names = self._catalogue
        known = set(_WORD.findall(draft.casefold()))
        for sentence in _SENTENCE.split(reply):
            words = _WORD.findall(sentence.casefold())
            named = sorted({w for w in words if w in names})
            if not named:
                continue
            new = [w for w in words if w not in known]
            if len(new) > NEW_WORDS * len(words):
                return (f"it says something new about {', '.join(named)} "
                        f"({', '.join(dict.fromkeys(new))} not in the draft)")
        return None

    def _strays(self, reply: str, draft: str) -> str | None:
        a, b = self.knowledge.embedder.embed([reply, draft])
        similarity = float(a @ b)
        if similarity < MIN_SIMILARITY:
            return f"it strays from the answer (similarity {similarity:.2f} < {MIN_SIMILARITY})"
        return None

    def turn_prompt(self, data: BrainInput, draft: str) -> str:
        language = ""
        if data.signals.language != DEFAULT_LANGUAGE:
            known = languages().get(data.signals.language)
            language = f"The customer writes in {known.name if known else data.signals.language}."
        return _turn(data.text, draft, language)


def _turn(message: str, draft: str, language: str = "") -> str:
    return render_file("writer_turn.md", message=json.dumps(message, ensure_ascii=False),
                       draft=json.dumps(draft, ensure_ascii=False), language=language).strip()


def _adds_a_verdict(reply: str, draft: str) -> str | None:
    """"Yes, …" or "No, …" where the draft says neither: the model's own verdict on a yes/no
    question, the one thing a small model gets wrong most (measured: "yes, WhatsApp is part of
    the Starter plan")."""
    said = _VERDICT.match(reply)
    if said is None:
        return None
    drafted = _VERDICT.match(draft)
    if drafted is None or drafted.group(1).casefold() != said.group(1).casefold():
        return f"it answers {said.group(1).casefold()!r} where the draft does not"
    return None


def _unusable(reply: str, message: str) -> str | None:
    if not reply:
        return "it is empty"
    if len(reply) > MAX_REPLY:
        return f"it is {len(reply)} characters long"
    if same_words(reply, message):
        return "it repeats the customer's message"
    return None


#: the rules' drafts open with the ``{hello}`` of prompts/replies.yaml: "Hi," or "Hi Dana,"
_HELLO = re.compile(r"^(Hi(?: [^,.!?]{1,40})?,)\s+")
_GREETS = re.compile(r"^(hi|hello|hey|dear)\b", re.IGNORECASE)


def split_greeting(draft: str) -> tuple[str, str]:
    """``("Hi Dana,", the rest)``: the model is asked for the answer, the greeting is kept."""
    match = _HELLO.match(draft)
    if not match:
        return "", draft
    rest = draft[match.end():]
    return match.group(1), rest[:1].upper() + rest[1:]


def _lower_first(reply: str, names: frozenset[str]) -> str:
    """"Sorry you're…" after "Hi," reads "Hi, sorry you're…"; a name ("Growth…", "I…") stays."""
    word = reply.split(" ", 1)[0].strip(",.!?:;")
    if not word or word == "I" or word.casefold() in names or not word[1:].islower():
        return reply
    return reply[:1].lower() + reply[1:]
