"""The LLM brain: one structured decision call per turn to any OpenAI-compatible endpoint.

The decision is constrained by the endpoint's strongest mechanism (``mode``):

- ``tools``: native tool calling; the model calls ``record_decision`` plus any action tools;
- ``json_schema``: ``response_format`` with the ``DecisionOutput`` JSON schema;
- ``json_object``: JSON mode, the schema spelled out in the prompt;
- ``json_object_schema``: llama.cpp's server: ``{"type": "json_object", "schema": ...}``, the
  output constrained by a grammar built from the schema.

The answer is validated by pydantic and against the configured intents and stages. Invalid
output gets one repair attempt; if that fails too, or the endpoint fails, the rules brain
decides and the decision records why. A turn never fails because the model did.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlparse

import httpx
import openai
from openai import OpenAI
from pydantic import TypeAdapter, ValidationError

from agent.brains.base import Brain, BrainDecision, BrainInput, DecisionOutput
from agent.brains.schemas import RecordDecision, decision_schema, tool_definitions
from agent.knowledge import KnowledgeBase
from agent.language import DEFAULT_LANGUAGE, languages
from core.domain import BrainInfo, ProposedAction, RejectedCall
from prompts import load_text, render_file

log = logging.getLogger(__name__)

Mode = Literal["tools", "json_schema", "json_object", "json_object_schema"]

#: Like pydantic-ai's flag: tests set it False so no test can reach a real model by accident.
#: Loopback endpoints (local stub servers, the embedded model) stay reachable.
ALLOW_MODEL_REQUESTS = True

_ACTIONS: TypeAdapter[ProposedAction] = TypeAdapter(ProposedAction)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
MAX_RECENT = 8
MAX_SNIPPET = 300
#: A conservative characters-per-token estimate for the prompt budget (English and JSON).
CHARS_PER_TOKEN = 3.2
#: Chat-template tokens around the messages.
PROMPT_OVERHEAD_TOKENS = 64


class ModelRequestsBlocked(RuntimeError):
    """A real model request was attempted while ALLOW_MODEL_REQUESTS is False."""


class InvalidDecision(ValueError):
    """The model's answer is not a valid decision; the message says what is wrong."""

    def __init__(self, message: str, raw: str) -> None:
        super().__init__(message)
        self.raw = raw


def _is_loopback(base_url: str) -> bool:
    host = urlparse(base_url).hostname or ""
    return host in {"localhost", "::1"} or host.startswith("127.")


def make_client(
    base_url: str, api_key: str, timeout_s: float, http_client: Any = None
) -> OpenAI:
    """The OpenAI client; ``http_client`` injects a transport (tests, proxies)."""
    return OpenAI(
        base_url=base_url or None,
        api_key=api_key or "not-needed",
        timeout=timeout_s,
        max_retries=0,
        http_client=http_client,
    )


@dataclass
class LLMBrain:
    client: OpenAI
    model: str
    mode: Mode
    fallback: Brain
    knowledge: KnowledgeBase
    intents: dict[str, str]
    temperature: float = 0.0
    max_tokens: int = 600
    injected_transport: bool = False
    #: "openai" for any OpenAI-compatible endpoint, "local" for the embedded model
    name: str = "openai"
    #: The model's context window in tokens; the turn prompt is trimmed to fit (None: no limit)
    context_tokens: int | None = None
    _tools: list[dict[str, Any]] = field(default_factory=tool_definitions)
    _system: dict[tuple[str, ...], str] = field(default_factory=dict)

    # --- prompt -------------------------------------------------------------------------

    def system_prompt(self, data: BrainInput) -> str:
        """The system prompt; it depends only on configuration, so it is rendered once."""
        return self.system_prompt_for(
            tuple(data.lifecycle.stages), data.writable_fields, data.policy_brief
        )

    def system_prompt_for(
        self, stages: tuple[str, ...], fields: tuple[str, ...], policy_brief: str
    ) -> str:
        key = (*stages, "|", *fields, "|", policy_brief)
        if key not in self._system:
            self._system[key] = self._render_system(stages, fields, policy_brief)
        return self._system[key]

    def warm_up(self, stages: tuple[str, ...], fields: tuple[str, ...], policy_brief: str) -> None:
        """Have the server process the system prompt once (llama.cpp caches the prefix), so
        the first customer does not wait for it. Failures are only logged."""
        self.warm_up_messages([{"role": "system",
                                "content": self.system_prompt_for(stages, fields, policy_brief)}])

    def warm_up_messages(self, prefix: list[dict[str, str]]) -> None:
        """One token of a request that starts with ``prefix``, so its processing is cached."""
        try:
            self._guard()
            self.client.chat.completions.create(
                model=self.model, max_tokens=1, temperature=0,
                messages=[*prefix, {"role": "user", "content": "warm-up"}],  # type: ignore[list-item]
            )
        except (openai.APIError, httpx.HTTPError, ModelRequestsBlocked) as exc:
            log.warning("model warm-up failed: %s", exc)

    def _render_system(
        self, stages: tuple[str, ...], fields: tuple[str, ...], policy_brief: str
    ) -> str:
        intents = "\n".join(f"- {name}: {desc}" for name, desc in self.intents.items())
        prompt = render_file(
            "decision_system.md",
            company=self.knowledge.company,
            intents=intents,
            stages=" → ".join(stages),
            fields=", ".join(sorted(fields)) or "none",
            policy="\n".join(
                part for part in (load_text("policy_facts.md").strip(), policy_brief) if part
            ),
            knowledge=self.knowledge.facts() if self.knowledge.whole_in_prompt else (
                "(The knowledge base is large: the entries retrieved for each message come "
                "with it, under \"Facts for this message\". State nothing beyond them.)"),
        )
        if self.mode == "json_object":
            schema = json.dumps(decision_schema(), separators=(",", ":"))
            prompt += f"\n\nReply with one JSON object only, matching this schema:\n{schema}"
        return prompt

    def turn_prompt(self, data: BrainInput) -> str:
        p = data.profile
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(p.attributes.items())) or "none"
        consent = "; ".join(
            f"{k}: service {v.service}, marketing {v.marketing}"
            for k, v in sorted(p.consent.items())
        ) or "none recorded"
        channels = ", ".join(sorted({i.kind for i in p.identities}))
        profile = (
            f"name: {p.name or 'unknown'}; stage: {p.lifecycle_stage}; "
            f"timezone: {p.timezone or 'unknown'}\n"
            f"attributes: {attrs}\nconsent: {consent}\nknown identities: {channels}"
        )
        events = [
            f"- {e.occurred_at:%Y-%m-%d %H:%M} {e.type} {json.dumps(e.properties)}"
            for e in data.events[:10]
        ]
        recent = [
            f"- [{m.channel}] {'customer' if m.direction == 'inbound' else m.author}: "
            f"{_quote(m.text[:MAX_SNIPPET])}"
            for m in data.recent[-MAX_RECENT:]
        ]
        history = [
            f"- {h.created_at:%Y-%m-%d} [{h.channel}] {h.direction}: "
            f"{_quote(h.text[:MAX_SNIPPET])}"
            for h in data.history
        ]
        top = ", ".join(f"{s.intent} {s.score:.2f}" for s in data.signals.intents[:3])
        hints = (
            f"intents: {top}; sentiment: {data.signals.sentiment}; "
            f"stage by rules: {data.rule_stage}"
        )
        if data.signals.language != DEFAULT_LANGUAGE:
            name = languages().get(data.signals.language)
            hints += (f"; language: {data.signals.language}"
                      f"{f' ({name.name}): reply in {name.name}' if name else ''}")
        if data.signals.seats:
            hints += f"; seats: {data.signals.seats}"
        if data.signals.subject:
            about = ", ".join(f"{k} {v}" for k, v in data.signals.subject.items())
            hints += f"; the conversation is about: {about}"
            if data.signals.referred:
                hints += (" (this message refers back to "
                          + ", ".join(f"{k} {v}" for k, v in data.signals.referred.items())
                          + ")")
        if data.signals.requirements:
            hints += f"; requirements: {', '.join(data.signals.requirements)}"
        handback = "none"
        if data.handback is not None:
            back = data.handback
            done = (f"resolved ({back.outcome})" if back.status == "resolved"
                    else "returned the conversation to you")
            lines = [f"{back.by or 'A colleague'} {done} at {back.closed_at:%Y-%m-%d %H:%M}."]
            # the latest few: the section is never trimmed, so it stays small
            lines += [f"- note: {_quote(n[:MAX_SNIPPET])}" for n in back.notes[-5:]]
            lines += [f"- they told the customer: {_quote(r[:MAX_SNIPPET])}"
                      for r in back.replies[-3:]]
            lines.append("Build on this; do not repeat what they already told the customer.")
            handback = "\n".join(lines)

        facts = ""
        if not self.knowledge.whole_in_prompt:
            retrieved = self.knowledge.search(data.signals.resolved or data.text)
            facts = ("## Facts for this message (retrieved from the knowledge base; never "
                     "state prices, discounts, dates or features beyond these)\n"
                     f"{self.knowledge.facts(self.knowledge.given(retrieved))}\n\n")

        def render() -> str:
            return render_file(
                "decision_turn.md",
                facts=facts,
                handback=handback,
                profile=profile,
                events="\n".join(events) or "none",
                recent="\n".join(recent) or "none",
                history="\n".join(history) or "none",
                hints=hints,
                channel=data.channel,
                message=_quote(data.text),
            )

        prompt = render()
        budget = self._turn_budget_chars(data)
        # over budget: drop the least relevant history first, then the oldest messages and
        # events; the system prompt (policy, facts) and the customer's message are never cut
        for pool, newest_last in ((history, False), (recent, True), (events, False)):
            while len(prompt) > budget and pool:
                pool.pop(0 if newest_last else -1)
                prompt = render()
        return prompt

    def _turn_budget_chars(self, data: BrainInput) -> int:
        if self.context_tokens is None:
            return 10**9
        system = len(self.system_prompt(data))
        tokens = self.context_tokens - self.max_tokens - PROMPT_OVERHEAD_TOKENS
        return max(0, int(tokens * CHARS_PER_TOKEN) - system)

    # --- the call ------------------------------------------------------------------------

    def _guard(self) -> None:
        if ALLOW_MODEL_REQUESTS or self.injected_transport:
            return
        if not _is_loopback(str(self.client.base_url)):
            raise ModelRequestsBlocked(
                f"model requests to {self.client.base_url} are blocked (ALLOW_MODEL_REQUESTS)"
            )

    def _request(self, messages: list[dict[str, Any]], info: BrainInfo) -> Any:
        if self.mode == "tools":
            return self._create(messages, info, tools=self._tools, tool_choice="required")
        return self._create(messages, info, response_format=self._format(
            "decision", decision_schema()))

    def request_json(self, messages: list[dict[str, Any]], info: BrainInfo, name: str,
                     schema: dict[str, Any]) -> Any:
        """One completion constrained to ``schema`` (with ``tools`` mode, as a JSON schema:
        every OpenAI-compatible server that calls tools takes one)."""
        mode = "json_schema" if self.mode == "tools" else self.mode
        return self._create(messages, info, response_format=self._format(name, schema, mode))

    def _format(self, name: str, schema: dict[str, Any], mode: str | None = None
                ) -> dict[str, Any]:
        mode = mode or self.mode
        if mode == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
        if mode == "json_object_schema":  # llama.cpp's server: the schema becomes a grammar
            return {"type": "json_object", "schema": schema}
        return {"type": "json_object"}

    def _create(self, messages: list[dict[str, Any]], info: BrainInfo, **extra: Any) -> Any:
        self._guard()
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            **extra,
        }
        response = self.client.chat.completions.create(**kwargs)
        info.llm_calls += 1
        if response.usage is not None:
            info.prompt_tokens += response.usage.prompt_tokens or 0
            info.completion_tokens += response.usage.completion_tokens or 0
        if not response.choices:
            raise InvalidDecision("the response has no choices", "")
        return response.choices[0].message

    def _parse(
        self, message: Any, data: BrainInput
    ) -> tuple[DecisionOutput, list[RejectedCall]]:
        """The decision, and the action calls that were not valid (kept out of it)."""
        tool_calls = getattr(message, "tool_calls", None) or []
        content = message.content or ""
        raw = content
        try:
            if tool_calls:
                raw = json.dumps(
                    [{"name": c.function.name, "arguments": c.function.arguments}
                     for c in tool_calls]
                )
                output, rejected = self._from_tool_calls(tool_calls)
            else:
                output, rejected = _from_json(_json_from_text(content))
        except (ValidationError, ValueError) as exc:
            raise InvalidDecision(_short_error(exc), raw) from exc
        problems = []
        if output.intent not in self.intents:
            problems.append(f"intent {output.intent!r} is not one of {sorted(self.intents)}")
        if output.stage not in data.lifecycle.stages:
            problems.append(f"stage {output.stage!r} is not one of {data.lifecycle.stages}")
        if output.reply and same_words(output.reply, data.text):
            problems.append("the reply repeats the customer's message; answer it instead")
        if problems:
            raise InvalidDecision("; ".join(problems), raw)
        return output, rejected

    @staticmethod
    def _from_tool_calls(tool_calls: list[Any]) -> tuple[DecisionOutput, list[RejectedCall]]:
        record: dict[str, Any] | None = None
        calls: list[Any] = []
        for call in tool_calls:
            name = call.function.name
            try:
                args = json.loads(call.function.arguments or "{}")
            except json.JSONDecodeError:
                args = call.function.arguments
            if name == "record_decision":
                record = RecordDecision.model_validate(args).model_dump()
            else:
                calls.append({**args, "tool": name} if isinstance(args, dict) else {
                    "tool": name, "__unparsed__": args
                })
        if record is None:
            raise ValueError("record_decision was not called")
        actions, rejected = _split_actions(calls)
        return DecisionOutput(**record, actions=actions), rejected

    def decide(self, data: BrainInput) -> BrainDecision:
        info = BrainInfo(name="local" if self.name == "local" else "openai", model=self.model,
                         role="decide")
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self.system_prompt(data)},
            {"role": "user", "content": self.turn_prompt(data)},
        ]
        try:
            try:
                output, rejected = self._parse(self._request(messages, info), data)
            except InvalidDecision as first:
                info.repaired = True
                messages += [
                    {"role": "assistant", "content": first.raw or "(empty)"},
                    {"role": "user", "content": render_file("repair.md", error=str(first))},
                ]
                output, rejected = self._parse(self._request(messages, info), data)
        except InvalidDecision as exc:
            return self._fall_back(data, info, f"invalid output after repair: {exc}")
        except (openai.APIError, httpx.HTTPError, ModelRequestsBlocked) as exc:
            return self._fall_back(data, info, f"{type(exc).__name__}: {exc}")
        return BrainDecision(output=output, info=info, rejected=rejected)

    def _fall_back(self, data: BrainInput, info: BrainInfo, reason: str) -> BrainDecision:
        decided = self.fallback.decide(data)
        decided.info = decided.info.model_copy(
            update={
                "fallback_reason": reason[:500],
                "model": info.model,
                "role": info.role,
                "llm_calls": info.llm_calls,
                "repaired": info.repaired,
                "prompt_tokens": info.prompt_tokens,
                "completion_tokens": info.completion_tokens,
            }
        )
        return decided


def same_words(reply: str, message: str) -> bool:
    """The reply only repeats (a run of) the customer's own words."""
    said = " " + " ".join(re.findall(r"\w+", message.lower())) + " "
    answer = " ".join(re.findall(r"\w+", reply.lower()))
    return len(answer.split()) >= 3 and f" {answer} " in said


def _from_json(data: Any) -> tuple[DecisionOutput, list[RejectedCall]]:
    if not isinstance(data, dict):
        raise ValueError("the answer must be a JSON object")
    calls = data.get("actions") or []
    if not isinstance(calls, list):
        raise ValueError("actions must be a list")
    output = DecisionOutput.model_validate({**data, "actions": []})
    actions, rejected = _split_actions(calls)
    return output.model_copy(update={"actions": actions}), rejected


def _split_actions(calls: list[Any]) -> tuple[list[ProposedAction], list[RejectedCall]]:
    """Valid actions, and the calls that are not (unknown tool, wrong or extra arguments)."""
    from tools import TOOLS

    actions: list[ProposedAction] = []
    rejected: list[RejectedCall] = []
    for call in calls:
        name = call.get("tool") if isinstance(call, dict) else None
        arguments = (
            {k: v for k, v in call.items() if k != "tool"} if isinstance(call, dict) else call
        )
        if not isinstance(name, str) or name not in TOOLS:
            shown = re.sub(r"[^A-Za-z0-9_.-]", "_", str(name))[:64]  # model text: bounded
            rejected.append(
                RejectedCall(
                    tool=shown, arguments=arguments, reason_codes=["unknown_tool"],
                    detail=f"{str(name)[:200]!r} is not a tool",
                )
            )
            continue
        try:
            actions.append(_ACTIONS.validate_python(call))
        except ValidationError as exc:
            rejected.append(
                RejectedCall(tool=name, arguments=arguments, detail=_short_error(exc)[:500])
            )
    return actions, rejected


_TAGS = re.compile(r"</?\s*customer_message\s*>", re.IGNORECASE)


def _quote(text: str) -> str:
    """Customer text as data: it cannot open or close the prompt's message tags."""
    return _TAGS.sub("", text)


def _json_from_text(content: str) -> Any:
    text = content.strip()
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1).strip()
    if not text:
        raise ValueError("empty answer")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from exc


def _short_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}"
            for e in exc.errors()[:6]
        )
    return str(exc)[:400]


def resolve_mode(mode: str, base_url: str) -> Mode:
    if mode != "auto":
        return mode  # type: ignore[return-value]
    host = urlparse(base_url).hostname or "api.openai.com"
    return "tools" if host == "api.openai.com" else "json_schema"

