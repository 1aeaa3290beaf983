"""Run eval cases: each in its own stores (a fresh SQLite file and vector memory), on a fixed
clock, against the real graph and policy engine; collect what happened for the scorers.

    load_suites(paths)            → suites, validated (errors name their line)
    run_case(case, env, brain)    → CaseRun: per-turn decisions, final CRM/outbox/handoffs
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from agent.knowledge import KnowledgeBase
from agent.understand import IntentClassifier
from core.clock import FixedClock, sequential_ids
from core.domain import Approval, CustomerProfile, Event, Identity
from core.settings import BrainName, Settings
from evals.personas import LLMVoice, ScriptedVoice, Voice
from evals.schema import Case, Persona, Suite
from journey.runtime import Container, build_container
from journey.turns import InboundRequest, TurnResult
from memory.embeddings import MiniLMEmbedder, get_embedder
from memory.vector import InMemoryVectorMemory
from policy.loader import default_policy_path
from policy.model import Policy
from prompts import parse_yaml
from prompts.yamlcheck import YamlInvalid, validate_yaml

SUITES_DIR = Path(__file__).with_name("suites")


class SuiteError(YamlInvalid):
    kind = "eval suite"


def load_suite(path: Path) -> Suite:
    return validate_yaml(path.read_text(encoding="utf-8"), Suite, str(path), error=SuiteError)


def load_suites(paths: Iterable[Path]) -> list[Suite]:
    """Suites from files and folders (every ``*.yaml`` below a folder), sorted by path."""
    files: list[Path] = []
    for path in paths:
        files += sorted(path.rglob("*.yaml")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError("no suite files found in " + ", ".join(map(str, paths)))
    return [load_suite(f) for f in files]


@dataclass
class EvalEnv:
    """What every case shares: the embedding model and the classifiers built on it."""

    embedder: MiniLMEmbedder
    classifier: IntentClassifier
    knowledge: KnowledgeBase

    @classmethod
    def load(cls) -> EvalEnv:
        embedder = get_embedder()
        return cls(embedder, IntentClassifier(embedder), KnowledgeBase(embedder))


@dataclass
class TurnRun:
    index: int
    customer: str
    channel: str
    text: str | None
    result: TurnResult | None = None
    approval: Approval | None = None
    latency_ms: float = 0.0
    error: str | None = None
    #: The world before the turn, read from the store (not from the engine's own record):
    #: consent per channel and purpose, whether a human owned the conversation, the time.
    consent_before: dict[str, dict[str, str]] = field(default_factory=dict)
    handoff_before: bool = False
    at: datetime | None = None
    timezone: str = ""


@dataclass
class CaseRun:
    case: Case
    suite: str
    brain: str
    turns: list[TurnRun] = field(default_factory=list)
    profiles: dict[str, CustomerProfile] = field(default_factory=dict)
    outbox: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    handoffs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    approvals: dict[str, list[Approval]] = field(default_factory=dict)
    policy: Policy | None = None
    error: str | None = None
    #: How a simulated customer's conversation ended: goal, handoff or turn_limit.
    persona_end: str | None = None


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def case_policy(case: Case, base: Path | None = None) -> str:
    """The policy YAML the case runs under: the base policy with the case's overrides."""
    path = base or default_policy_path()
    text = path.read_text(encoding="utf-8")
    if not case.fixtures.policy:
        return text
    merged = _merge(parse_yaml(text, str(path)) or {}, case.fixtures.policy)
    return yaml.safe_dump(merged, sort_keys=False, allow_unicode=True)


def _identities(c: Any) -> list[Identity]:
    pairs = (("email", c.email), ("phone", c.phone), ("web_chat_id", c.web_chat_id))
    return [Identity(kind=k, value=v) for k, v in pairs if v]  # type: ignore[arg-type]


def _customer_ref(c: Any, channel: str) -> dict[str, Any]:
    ref = {"email": c.email, "phone": c.phone, "web_chat_id": c.web_chat_id, "name": c.name}
    if channel == "web_chat" and not c.web_chat_id:
        ref["web_chat_id"] = f"eval_{c.key}"
    return {k: v for k, v in ref.items() if v}


def run_case(
    case: Case,
    env: EvalEnv,
    *,
    suite: str = "",
    brain: BrainName = "rules",
    policy_path: Path | None = None,
    llm: dict[str, Any] | None = None,
    container_hook: Callable[[Container], None] | None = None,
    voice: Voice | None = None,
) -> CaseRun:
    """Play one case in fresh stores and collect the outcome. Never raises for the agent's
    failures: they are recorded on the run and scored as failures."""
    run = CaseRun(case=case, suite=suite, brain=brain)
    with tempfile.TemporaryDirectory(prefix="journey-eval-") as tmp:
        policy_file = Path(tmp) / "policy.yaml"
        policy_file.write_text(case_policy(case, policy_path), encoding="utf-8")
        clock = FixedClock(case.fixtures.clock)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=Path(tmp) / "data", brain=brain, policy_path=policy_file, **(llm or {}),
        )
        container = build_container(
            settings, clock=clock, ids=sequential_ids(), embedder=env.embedder,
            classifier=env.classifier, knowledge=env.knowledge,
            memory=InMemoryVectorMemory(env.embedder),
        )
        try:
            if container_hook:
                container_hook(container)
            run.policy = container.policy.get()
            ids = _set_up(case, container, clock)
            _play(case, container, clock, run)
            if case.persona is not None:
                _converse(case, container, clock, run, voice or _voice(case.persona, settings))
            for key, cid in ids.items():
                profile = container.store.get_customer(cid)
                if profile is not None:
                    run.profiles[key] = profile
                run.outbox[key] = container.store.outbox(cid)
                run.handoffs[key] = [h.model_dump(mode="json")
                                     for h in container.store.handoffs(cid)]
                run.approvals[key] = container.store.approvals(customer_id=cid)
        except Exception as exc:  # the case fails; the run goes on
            run.error = f"{type(exc).__name__}: {exc}"
        finally:
            container.close()
    return run


def _set_up(case: Case, container: Container, clock: FixedClock) -> dict[str, str]:
    store = container.store
    ids: dict[str, str] = {}
    for c in case.fixtures.customers:
        profile = store.create_customer(
            _identities(c), c.stage, name=c.name, timezone=c.timezone,
            attributes=c.attributes, consent=c.consent,
        )
        ids[c.key] = profile.id
    for i, ev in enumerate(case.fixtures.events):
        store.add_event(Event(
            id=f"eval-ev-{i}", customer_id=ids[ev.customer], type=ev.type,
            properties=ev.properties, occurred_at=clock.now() - ev.ago,
        ))
    return ids


def _voice(persona: Persona, settings: Settings) -> Voice:
    if persona.kind == "scripted":
        return ScriptedVoice()
    from agent.brains.llm import make_client

    client = make_client(settings.llm_base_url, settings.llm_api_key.get_secret_value(),
                         settings.llm_timeout_s)
    return LLMVoice(client, settings.llm_model)


def _converse(
    case: Case, container: Container, clock: FixedClock, run: CaseRun, voice: Voice
) -> None:
    """The simulated customer talks until its goal, a handoff, or the turn limit."""
    persona = case.persona
    assert persona is not None
    customers = {c.key: c for c in case.fixtures.customers}
    key = persona.customer or case.fixtures.customers[0].key
    transcript: list[tuple[str, str]] = []
    text: str | None = persona.opening
    for n in range(persona.max_turns):
        if text is None:
            run.persona_end = "goal"
            return
        clock.advance(seconds=persona.pace.total_seconds())
        record = TurnRun(index=len(run.turns), customer=key, channel=persona.channel,
                         text=text, at=clock.now())
        start = time.perf_counter()
        try:
            record.result = container.orchestrator.handle_message(InboundRequest.model_validate({
                "channel": persona.channel,
                "customer": _customer_ref(customers[key], persona.channel),
                "text": text, "external_id": f"{case.id}-persona-{n}",
            }))
        except Exception as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            run.turns.append(record)
            run.persona_end = "error"
            return
        record.latency_ms = (time.perf_counter() - start) * 1000
        run.turns.append(record)
        reply = record.result.reply or ""
        transcript += [("customer", text), ("bot", reply)]
        if persona.goal_reply_contains and any(
            g.lower() in reply.lower() for g in persona.goal_reply_contains
        ):
            run.persona_end = "goal"
            return
        if persona.end_on_handoff and any(
            a.tool == "escalate_to_human" and a.executed for a in record.result.actions
        ):
            run.persona_end = "handoff"
            return
        text = voice.next(persona, transcript)
    run.persona_end = "turn_limit"


def _play(case: Case, container: Container, clock: FixedClock, run: CaseRun) -> None:
    customers = {c.key: c for c in case.fixtures.customers}
    default = case.fixtures.customers[0].key
    last_held: str | None = None
    for i, turn in enumerate(case.turns):
        clock.advance(seconds=turn.after.total_seconds())
        key = turn.customer or default
        record = TurnRun(index=i, customer=key, channel=turn.channel, text=turn.say,
                         at=clock.now())
        before = container.store.find_customer(_identities(customers[key])[0]) \
            if _identities(customers[key]) else None
        if before is not None:
            record.consent_before = {k: v.model_dump() for k, v in before.consent.items()}
            record.timezone = before.timezone
            record.handoff_before = any(
                h.status in ("open", "claimed") for h in container.store.handoffs(before.id)
            )
        start = time.perf_counter()
        try:
            if turn.say is not None:
                request = InboundRequest.model_validate({
                    "channel": turn.channel,
                    "customer": _customer_ref(customers[key], turn.channel),
                    "text": turn.say,
                    "external_id": f"{case.id}-{i}",
                })
                record.result = container.orchestrator.handle_message(request)
                held = [v.approval_id for v in record.result.decision.verdicts if v.approval_id]
                last_held = held[-1] if held else last_held
            else:
                if last_held is None:
                    raise ValueError("no action is waiting for approval")
                record.approval = container.orchestrator.decide_approval(
                    last_held, approve=bool(turn.approve), by="eval"
                )
        except Exception as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        record.latency_ms = (time.perf_counter() - start) * 1000
        run.turns.append(record)
