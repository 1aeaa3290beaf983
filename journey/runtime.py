"""Wiring: build every long-lived service from ``Settings`` (the API lifespan and the CLI use
this). Nothing here runs at import time."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypedDict
from urllib.parse import urlparse

import httpx
from langgraph.checkpoint.base import BaseCheckpointSaver
from pydantic import SecretStr

from agent import language
from agent.brains.base import Brain
from agent.brains.llm import LLMBrain, make_client, resolve_mode
from agent.brains.rules import RulesBrain
from agent.brains.writer import WriterBrain
from agent.context import TurnServices
from agent.graph import build_graph
from agent.knowledge import KnowledgeBase, load_knowledge
from agent.understand import IntentClassifier
from channels.base import ChannelAdapter
from channels.registry import build_adapters, close_adapters
from core import identity
from core.clock import Clock, IdFactory, SystemClock, uuid_ids
from core.domain import Channel, Event
from core.hub import JOBS_KEY, Hub
from core.settings import Settings
from journey.customers import CustomerService
from journey.erasure import ErasureService
from journey.handoffs import HandoffService
from journey.localllm import LocalModelError, LocalServer, start_local
from journey.notifications import NotificationService
from journey.segment import SegmentService
from journey.signals import SignalService
from journey.stepper import JourneyStepper
from journey.turns import Orchestrator
from journey.webhooks import CrmWebhooks, HandoffWebhooks
from journey.worker import Worker, WorkerPool
from memory import db, migrate
from memory.checkpoints import make_checkpointer
from memory.db import Engine, make_engine
from memory.embeddings import MiniLMEmbedder, get_embedder
from memory.segment import MessageReceipts
from memory.store import Store
from memory.vector import ChromaVectorMemory, VectorMemory, WriteBehindMemory
from policy.brief import policy_brief
from policy.journeys import JourneysProvider
from policy.lifecycle import Lifecycle, load_lifecycle
from policy.loader import PolicyProvider
from policy.notifications import NotificationTemplatesProvider

log = logging.getLogger(__name__)


class ServerHealth(TypedDict):
    database: str
    vector_memory: str
    brain: str
    model: str | None
    brain_note: str | None


@dataclass
class Container:
    settings: Settings
    engine: Engine
    store: Store
    memory: VectorMemory
    embedder: MiniLMEmbedder
    lifecycle: Lifecycle
    classifier: IntentClassifier
    knowledge: KnowledgeBase
    brain: Brain
    rules_brain: RulesBrain
    orchestrator: Orchestrator
    checkpointer: BaseCheckpointSaver[Any]
    policy: PolicyProvider
    #: the human inbox (``/v1/handoffs``, the console)
    handoffs: HandoffService
    #: the profile API (``PUT /v1/customers``, lookups, the consent ledger)
    customers: CustomerService
    #: Why the configured brain is not the one deciding (e.g. the local model failed to load).
    brain_note: str | None = None
    local_llm: LocalServer | None = None
    #: wakes web-chat streams (key ``customer:<id>``) and idle workers (key ``jobs``)
    hub: Hub = field(default_factory=Hub)
    journeys: JourneysProvider | None = None
    signals: SignalService | None = None
    #: Segment-compatible ingestion (``/v1/batch``, ``/v1/identify``, ``/v1/track``…)
    segment: SegmentService | None = None
    adapters: dict[Channel, ChannelAdapter] = field(default_factory=dict)
    #: signed handoff webhooks (None: ``handoff_webhook_url`` is not set)
    webhooks: HandoffWebhooks | None = None
    #: the signed CRM sync out (None: ``crm_webhook_url`` is not set)
    crm_webhooks: CrmWebhooks | None = None
    #: transactional messages (``POST /v1/notifications``)
    notifications: NotificationService | None = None
    #: erasure, export and retention of a customer's data (``DELETE /v1/customers/{id}``)
    erasure: ErasureService | None = None
    #: enrols and steps the customers of journeys with steps
    stepper: JourneyStepper | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def make_workers(self, n: int, prefix: str = "worker") -> WorkerPool:
        """``n`` worker threads over this container (``journey serve``, ``journey worker``)."""
        if self.journeys is None:  # pragma: no cover - build_container always sets it
            raise RuntimeError("the container has no journeys")
        host = socket.gethostname()
        workers = [
            Worker(
                name=f"{prefix}-{host}-{os.getpid()}-{i}", store=self.store,
                orchestrator=self.orchestrator, adapters=self.adapters, policy=self.policy,
                journeys=self.journeys, settings=self.settings, clock=self.store.clock,
                hub=self.hub, company=self.knowledge.company, webhooks=self.webhooks,
                crm_webhooks=self.crm_webhooks, handoffs=self.handoffs, erasure=self.erasure,
                stepper=self.stepper,
            )
            for i in range(n)
        ]
        return WorkerPool(workers)

    def health(self) -> ServerHealth:
        """What the server runs on, after checking the database answers (``GET /v1/health``)."""
        settings = self.settings
        return ServerHealth(
            database=db.ping(self.engine),
            vector_memory="chroma-http" if settings.chroma_url else "chroma-embedded",
            brain=self.brain.name,
            model=(self.local_llm.model.stem if self.local_llm else settings.llm_model)
            if self.brain.name != "rules" else None,
            brain_note=self.brain_note,
        )

    def close(self) -> None:
        for closer in reversed(self._closers):
            closer()
        self._closers.clear()


def make_memory(settings: Settings, embedder: MiniLMEmbedder) -> VectorMemory:
    chroma = _make_chroma(settings, embedder)
    return WriteBehindMemory(chroma, embedder) if settings.vector_write_behind else chroma


def _make_chroma(settings: Settings, embedder: MiniLMEmbedder) -> ChromaVectorMemory:
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        return ChromaVectorMemory.http(
            url.hostname or "127.0.0.1",
            url.port or (443 if url.scheme == "https" else 8000),
            embedder,
            ssl=url.scheme == "https",
            collection=settings.chroma_collection,
        )
    return ChromaVectorMemory.persistent(
        settings.data_dir / "chroma", embedder, collection=settings.chroma_collection
    )


#: the smallest local GGUF file that makes the whole decision when the role is ``auto``: a 3B
#: model at 4 bits is about 1.9 GB; the embedded 0.5B one (491 MB) writes (README: which model
#: gets which role)
DECIDE_FROM_BYTES = 1_800_000_000


def make_brain(
    settings: Settings,
    rules: RulesBrain,
    knowledge: KnowledgeBase,
    intents: dict[str, str],
    http_client: httpx.Client | None = None,
    name: str = "openai",
    context_tokens: int | None = None,
    model_bytes: int | None = None,
) -> Brain:
    """The brain the settings ask for. ``JOURNEY_LLM_ROLE=auto``: an endpoint decides; a local
    GGUF decides from :data:`DECIDE_FROM_BYTES` (about 3B parameters at 4 bits), a smaller one
    (the embedded 0.5B model, ``model_bytes`` unknown) writes."""
    if settings.resolved_brain == "rules":
        return rules
    llm = LLMBrain(
        name=name,
        context_tokens=context_tokens,
        client=make_client(
            settings.llm_base_url,
            settings.llm_api_key.get_secret_value(),
            settings.llm_timeout_s,
            http_client=http_client,
        ),
        model=settings.llm_model,
        mode=resolve_mode(settings.llm_mode, settings.llm_base_url),
        fallback=rules,
        knowledge=knowledge,
        intents=intents,
        temperature=settings.llm_temperature,
        max_tokens=settings.llm_max_tokens,
        injected_transport=http_client is not None,
    )
    role = settings.llm_role if settings.llm_role != "auto" else (
        "write" if name == "local" and (model_bytes or 0) < DECIDE_FROM_BYTES else "decide")
    if role == "write":
        return WriterBrain(llm=llm, rules=rules, knowledge=knowledge)
    return llm


def build_container(
    settings: Settings,
    *,
    clock: Clock | None = None,
    ids: IdFactory = uuid_ids,
    memory: VectorMemory | None = None,
    llm_http_client: httpx.Client | None = None,
    embedder: MiniLMEmbedder | None = None,
    classifier: IntentClassifier | None = None,
    knowledge: KnowledgeBase | None = None,
) -> Container:
    clock = clock or SystemClock()
    policy = PolicyProvider(settings.policy_path)  # an invalid policy stops start-up here
    journeys = JourneysProvider(settings.journeys_path)  # and so do invalid journeys
    templates = NotificationTemplatesProvider(settings.notifications_path)  # and templates
    closers: list[Callable[[], None]] = []
    engine = make_engine(settings.resolved_database_url)
    closers.append(engine.dispose)
    identity.set_default_region(settings.default_phone_region)
    migrate.upgrade(engine)
    store = Store(engine, clock=clock, ids=ids)
    # the key of the hashes an erasure keeps (empty: one generated once, kept in the database)
    store.erasure.salt = settings.erasure_salt.get_secret_value()
    embedder = embedder or get_embedder()
    memory = memory or make_memory(settings, embedder)
    if isinstance(memory, WriteBehindMemory):
        closers.append(memory.close)  # what is buffered lands before the process ends
    lifecycle = load_lifecycle()
    classifier = classifier or IntentClassifier(embedder)
    knowledge = knowledge or KnowledgeBase(embedder, load_knowledge(settings.knowledge_path),
                                           in_prompt=settings.knowledge_in_prompt)
    rules = RulesBrain(knowledge)
    brain_note = None
    local = None
    if settings.resolved_brain == "local":
        try:
            local = start_local(settings)
            closers.append(local.stop)
            local_settings = settings.model_copy(update={
                "brain": "openai", "llm_base_url": local.base_url,
                "llm_model": local.model.stem,
                # llama.cpp: schema-constrained output is valid; native tool calls only come
                # back when forced, so the decision is a JSON object constrained by the schema
                "llm_mode": "json_object_schema" if settings.llm_mode == "auto"
                else settings.llm_mode,
                "llm_timeout_s": max(settings.llm_timeout_s, 120.0),
            })
            brain = make_brain(local_settings, rules, knowledge, classifier.descriptions,
                               llm_http_client, name="local",
                               context_tokens=settings.local_context,
                               model_bytes=local.model.stat().st_size)
            if isinstance(brain, LLMBrain | WriterBrain):
                # the first customer should not wait ~30 s for the system prompt: process it
                # now, in the background, while the server finishes starting
                policy_now = policy.get()
                threading.Thread(
                    target=brain.warm_up, daemon=True, name="local-llm-warm-up",
                    args=(tuple(lifecycle.stages), tuple(policy_now.crm.writable_fields),
                          policy_brief(policy_now)),
                ).start()
        except LocalModelError as exc:
            brain_note = f"the local model is unavailable ({exc}); the rules brain decides"
            log.warning(brain_note)
            brain = rules
    else:
        brain = make_brain(settings, rules, knowledge, classifier.descriptions, llm_http_client)
    # the language detector's model: loaded beside start-up, not on the first customer's turn
    threading.Thread(target=language.warm_up, daemon=True, name="language-warm-up").start()
    checkpointer, close_checkpointer = make_checkpointer(settings)
    closers.append(close_checkpointer)
    services = TurnServices(
        store=store,
        memory=memory,
        classifier=classifier,
        brain=brain,
        rules_brain=rules,
        lifecycle=lifecycle,
        clock=clock,
        ids=ids,
        policy=policy,
        history_k=settings.history_k,
        journeys=journeys,
        company=knowledge.company,
        knowledge=knowledge,
    )
    orchestrator = Orchestrator(services, build_graph(checkpointer))
    # a turn answered inline whose process dies is taken over by a worker after this long
    orchestrator.turn_lease = timedelta(seconds=settings.job_lease_s)
    hub = Hub()
    orchestrator.on_enqueue = lambda: hub.notify(JOBS_KEY)
    def follow_merge(survivor: str, merged: str) -> None:
        memory.reassign(merged, survivor)  # the merged profile's history is searchable

    store.on_merge.append(follow_merge)
    # identities an older version stored in other spellings: canonical now, duplicates merged
    store.normalise_identities(stages=lifecycle.stages)
    stepper = JourneyStepper(store, journeys, clock, orchestrator.run_proactive)

    def after_events(events: list[Event], fired: dict[str, list[str]]) -> None:
        if stepper.on_events(events, fired):
            hub.notify(JOBS_KEY)

    signals = SignalService(store, journeys, lifecycle, clock,
                            on_enqueue=lambda: hub.notify(JOBS_KEY), policy=policy,
                            after_events=after_events)
    orchestrator.on_decided.append(signals.stage_moved)
    adapters = build_adapters(settings, hub, clock)
    closers.append(lambda: close_adapters(adapters))
    handoffs = HandoffService(store, policy, lifecycle.stages, hub=hub, memory=memory,
                              facts=[knowledge.company, *(e.answer for e in knowledge.entries)])
    orchestrator.on_inbound.append(handoffs.record_customer_message)
    webhooks = None
    if settings.handoff_webhook_url:
        webhooks = HandoffWebhooks(
            settings.handoff_webhook_url, _webhook_secret(settings, "handoff"), handoffs, clock,
            _http_client(settings, closers))
        store.handoff_webhooks = True
    crm_webhooks = None
    if settings.crm_webhook_url:
        crm_webhooks = CrmWebhooks(settings.crm_webhook_url, _webhook_secret(settings, "crm"),
                                   store, clock, _http_client(settings, closers))
        store.sync.enabled = True
    return Container(
        settings=settings,
        engine=engine,
        store=store,
        memory=memory,
        embedder=embedder,
        lifecycle=lifecycle,
        classifier=classifier,
        knowledge=knowledge,
        brain=brain,
        rules_brain=rules,
        orchestrator=orchestrator,
        checkpointer=checkpointer,
        policy=policy,
        brain_note=brain_note,
        local_llm=local,
        hub=hub,
        journeys=journeys,
        signals=signals,
        stepper=stepper,
        segment=SegmentService(store, signals, lifecycle, clock,
                               MessageReceipts(store.engine, clock), policy=policy),
        adapters=adapters,
        handoffs=handoffs,
        customers=CustomerService(store, lifecycle),
        webhooks=webhooks,
        crm_webhooks=crm_webhooks,
        erasure=ErasureService(store, checkpointer, memory, orchestrator.locks,
                               settings.data_dir, retention_days=settings.retention_days),
        notifications=NotificationService(
            store=store, policy=policy, lifecycle=lifecycle, templates=templates,
            memory=memory, clock=clock, ids=ids, company=knowledge.company),
        _closers=closers,
    )


def _webhook_secret(settings: Settings, kind: str) -> str:
    """The secret that signs ``kind``'s webhooks (``<kind>_webhook_secret``, else
    ``webhook_secret``); outbound webhooks are never sent unsigned."""
    own: SecretStr = getattr(settings, f"{kind}_webhook_secret")
    secret = own.get_secret_value() or settings.webhook_secret.get_secret_value()
    if not secret:
        raise ValueError(f"{kind}_webhook_url is set but neither {kind}_webhook_secret nor "
                         "webhook_secret is: the webhooks must be signed")
    return secret


def _http_client(settings: Settings, closers: list[Callable[[], None]]) -> httpx.Client:
    client = httpx.Client(timeout=settings.provider_timeout_s)
    closers.append(client.close)
    return client
