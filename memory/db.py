"""Relational schema (SQLAlchemy Core) and engine construction.

The schema is versioned by the alembic migrations in ``memory/migrations``; this module's
``metadata`` must match them (a test compares the two on SQLite and PostgreSQL).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy import Engine as Engine  # the handle the wiring passes around
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

# JSONB on PostgreSQL, JSON text elsewhere.
Json = JSON().with_variant(JSONB(), "postgresql")


def _ts(name: str, **kw: Any) -> Column[Any]:
    return Column(name, DateTime(timezone=True), **kw)


customers = Table(
    "customers",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200)),
    Column("lifecycle_stage", String(60), nullable=False),
    Column("timezone", String(60), nullable=False),
    Column("attributes", Json, nullable=False),
    Column("consent", Json, nullable=False),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    # set when this profile was merged into another: the id still resolves to the survivor
    Column("merged_into", String(40)),
    # BCP 47, e.g. en-US; empty when unknown
    Column("locale", String(35), nullable=False, server_default=""),
    # the channel the customer prefers to be reached on, when they said so
    Column("channel_preference", String(20)),
)

#: The consent ledger: every change of a customer's consent on a channel for a purpose, with
#: its source and evidence (what a regulator asks for). Written in the transaction that
#: changes the consent.
consent_events = Table(
    "consent_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False, index=True),
    Column("channel", String(20), nullable=False),
    Column("purpose", String(20), nullable=False),
    Column("previous", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    # api, signup-form, keyword, import, a person, erasure …
    Column("source", String(80), nullable=False),
    # who: an API key's holder, "customer" for a keyword, an agent's name
    Column("by", String(200), nullable=False),
    Column("evidence", Text),
    # when the customer gave or withdrew it (may be earlier than the row)
    _ts("at", nullable=False),
    _ts("created_at", nullable=False),
)

#: Every merge of two profiles: who survived, what moved, why.
profile_merges = Table(
    "profile_merges",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("survivor_id", String(40), ForeignKey("customers.id"), nullable=False, index=True),
    Column("merged_id", String(40), ForeignKey("customers.id"), nullable=False, index=True),
    Column("reason", Text, nullable=False),
    Column("by", String(200), nullable=False),
    Column("identities", Json, nullable=False),
    Column("moved", Json, nullable=False),
    _ts("created_at", nullable=False),
)

identities = Table(
    "identities",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    Column("value", String(320), nullable=False),
    UniqueConstraint("kind", "value", name="uq_identities_kind_value"),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False, index=True),
    Column("status", String(20), nullable=False),
    Column("owner", String(20), nullable=False),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("conversation_id", String(40), ForeignKey("conversations.id"), nullable=False),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False),
    Column("direction", String(10), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("text", Text, nullable=False),
    Column("external_id", String(200)),
    Column("author", String(60), nullable=False),
    # inbound only: pending until the turn that answers it is committed, then done
    Column("turn_status", String(20)),
    _ts("turn_started_at"),
    _ts("created_at", nullable=False),
    # channel details: an email's subject, Message-ID, In-Reply-To and References
    Column("meta", Json),
    UniqueConstraint("channel", "external_id", name="uq_messages_channel_external_id"),
    Index("ix_messages_conversation_created", "conversation_id", "created_at"),
    Index("ix_messages_customer_created", "customer_id", "created_at"),
)

events = Table(
    "events",
    metadata,
    Column("id", String(60), primary_key=True),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False),
    Column("type", String(80), nullable=False),
    Column("properties", Json, nullable=False),
    _ts("occurred_at", nullable=False),
    Index("ix_events_customer_occurred", "customer_id", "occurred_at"),
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("conversation_id", String(40), ForeignKey("conversations.id"), nullable=False),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False, index=True),
    # null for a proactive decision (a journey woke the agent; see ``job_id`` and ``trigger``)
    Column("inbound_message_id", String(40), ForeignKey("messages.id"), unique=True),
    Column("intent", String(40), nullable=False),
    Column("intent_confidence", Float, nullable=False),
    Column("stage", String(60), nullable=False),
    Column("previous_stage", String(60), nullable=False),
    Column("sentiment", String(20), nullable=False),
    Column("proposed", Json, nullable=False),
    Column("verdicts", Json, nullable=False),
    Column("reasons", Json, nullable=False),
    Column("reply", Text),
    Column("brain", Json, nullable=False),
    Column("latency_ms", Float, nullable=False),
    _ts("created_at", nullable=False),
    Column("inputs", Json),
    Column("policy_version", String(40)),
    Column("rejected", Json),
    Column("job_id", String(40)),
    Column("trigger", Json),
    UniqueConstraint("job_id", name="uq_decisions_job_id"),
    Index("ix_decisions_conversation_created", "conversation_id", "created_at"),
)

#: Every reason code of a decision, for ``GET /v1/decisions?reason=``.
decision_reasons = Table(
    "decision_reasons",
    metadata,
    Column("decision_id", String(40), ForeignKey("decisions.id"), primary_key=True),
    Column("code", String(160), primary_key=True),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False),
    Index("ix_decision_reasons_code", "code", "customer_id"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", String(40), primary_key=True),
    # null for a person's reply from the inbox (``meta.handoff_id`` says which handoff)
    Column("decision_id", String(40), ForeignKey("decisions.id")),
    Column("message_id", String(40), ForeignKey("messages.id"), nullable=False),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("address", String(320), nullable=False),
    Column("text", Text, nullable=False),
    Column("purpose", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("idempotency_key", String(120), nullable=False, unique=True),
    Column("attempts", Integer, nullable=False, default=0),
    _ts("created_at", nullable=False),
    _ts("sent_at"),
    # deferred (quiet hours): not delivered before this time
    _ts("not_before"),
    Column("is_reply", Boolean),
    # the relay: when to try next, the lease of the worker sending it, the last failure
    _ts("next_attempt_at"),
    _ts("locked_until"),
    Column("last_error", Text),
    Column("provider_message_id", String(200)),
    Column("provider_status", String(40)),
    Column("meta", Json),
    Index("ix_outbox_status_created", "status", "created_at"),
    Index("ix_outbox_status_next", "status", "next_attempt_at"),
    Index("ix_outbox_provider_message", "provider_message_id"),
    Index("ix_outbox_customer_created", "customer_id", "created_at"),
)

handoffs = Table(
    "handoffs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("conversation_id", String(40), ForeignKey("conversations.id"), nullable=False),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False),
    Column("decision_id", String(40), ForeignKey("decisions.id")),
    Column("queue", String(40), nullable=False),
    Column("reason", Text, nullable=False),
    Column("summary", Text, nullable=False),
    Column("priority", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    # the inbox: who works it, when it was claimed and closed, how it ended
    Column("assignee", String(200)),
    _ts("claimed_at"),
    _ts("closed_at"),
    Column("closed_by", String(200)),
    Column("outcome", String(40)),
    Index("ix_handoffs_conversation_status", "conversation_id", "status"),
    # a customer's handoffs (the inbox's customer view, an enrolment's "a person owns it" exit)
    Index("ix_handoffs_customer_status", "customer_id", "status"),
    Index("ix_handoffs_status_queue", "status", "queue", "created_at"),
)

#: What happened to a handoff: created, claimed, reply, note, customer_message, resolved,
#: returned, sla_breached. A retried request with the same idempotency key finds its event.
handoff_events = Table(
    "handoff_events",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("handoff_id", String(40), ForeignKey("handoffs.id"), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("body", Json, nullable=False),
    Column("idempotency_key", String(200)),
    _ts("created_at", nullable=False),
    UniqueConstraint("handoff_id", "idempotency_key", name="uq_handoff_events_key"),
    Index("ix_handoff_events_handoff_created", "handoff_id", "created_at"),
)

crm_activities = Table(
    "crm_activities",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False, index=True),
    Column("decision_id", String(40), ForeignKey("decisions.id")),
    Column("kind", String(20), nullable=False),  # note | task | stage_change | fields
    Column("body", Json, nullable=False),
    Column("done", Boolean, nullable=False, default=False),
    _ts("created_at", nullable=False),
)


approvals = Table(
    "approvals",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("decision_id", String(40), ForeignKey("decisions.id"), nullable=False),
    Column("conversation_id", String(40), ForeignKey("conversations.id"), nullable=False),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False),
    Column("inbound_message_id", String(40), nullable=False),
    Column("action", Json, nullable=False),
    Column("reason_codes", Json, nullable=False),
    Column("status", String(20), nullable=False),  # pending | approved | rejected
    Column("result", Json, nullable=False),
    Column("decided_by", String(200)),
    Column("note", Text),
    # a held message keeps the engine's reading: deferred until, and whether it is a reply
    _ts("deliver_at"),
    Column("is_reply", Boolean),
    _ts("created_at", nullable=False),
    _ts("decided_at"),
    Index("ix_approvals_status_created", "status", "created_at"),
)


#: Work for the workers: queued turns, journey wake-ups, scheduled actions (follow-ups, nurture).
jobs = Table(
    "jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(30), nullable=False),  # turn | journey | action
    Column("customer_id", String(40), ForeignKey("customers.id")),
    # one job per key: a repeated webhook or a re-fired trigger cannot queue the work twice
    Column("dedupe_key", String(240), nullable=False, unique=True),
    Column("payload", Json, nullable=False),
    _ts("due_at", nullable=False),
    Column("status", String(20), nullable=False),  # pending | running | done | cancelled | failed
    Column("attempts", Integer, nullable=False),
    _ts("locked_until"),
    Column("worker", String(80)),
    Column("journey", String(80)),
    Column("tag", String(80)),
    Column("result", Json),
    Column("error", Text),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    Index("ix_jobs_status_due", "status", "due_at"),
    Index("ix_jobs_customer_status", "customer_id", "status"),
)


#: Signed webhooks already accepted (a Mailgun token, a generic webhook's signature), kept while
#: their signature could still pass as fresh: a second use of one is a replay (``ReplayGuard``).
webhook_receipts = Table(
    "webhook_receipts",
    metadata,
    Column("source", String(20), primary_key=True),
    # the SHA-256 (hex) of the token or signature
    Column("key", String(64), primary_key=True),
    _ts("first_seen_at", nullable=False),
    _ts("expires_at", nullable=False),
    Index("ix_webhook_receipts_source_expires", "source", "expires_at"),
)

# --- erasure: the audit record of each erasure, without personal data (memory.erasure) ---

#: One row per erasure: the audit record (no personal data).
erasures = Table(
    "erasures",
    metadata,
    Column("id", String(40), primary_key=True),
    # the erased profile's id (it resolves to nothing any more) and those merged into it
    Column("customer_id", String(40), nullable=False, unique=True),
    Column("merged_ids", Json, nullable=False),
    Column("erased_at", DateTime(timezone=True), nullable=False),
    # the API key's holder, or cli:<user>
    Column("by", String(200), nullable=False),
    # rows removed per table, checkpoint threads, vector records, lines of files
    Column("counts", Json, nullable=False),
    # the consent withdrawn by the erasure (source "erasure"): channel, purpose, previous
    Column("consent", Json, nullable=False),
    # people who wrote again after the erasure (a fresh profile each): when, how many times
    Column("recreated", Json),
)

#: A keyed hash of each identity an erasure removed.
erased_identities = Table(
    "erased_identities",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("erasure_id", String(40), ForeignKey("erasures.id"), nullable=False, index=True),
    Column("erased_at", DateTime(timezone=True), nullable=False),
)

#: The generated hashing key, when ``JOURNEY_ERASURE_SALT`` is not set (one row).
erasure_salt = Table(
    "erasure_salt",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("salt", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

#: One row per ``POST /v1/notifications``, keyed by its idempotency key (memory.notifications).
notifications = Table(
    "notifications",
    metadata,
    Column("id", String(40), primary_key=True),
    # null: the caller sent no key (every request is a new notification)
    Column("idempotency_key", String(200), unique=True),
    # sha256 of the request (variables masked): the same key with another body is a conflict
    Column("request_hash", String(64), nullable=False),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False),
    Column("template", String(80), nullable=False),
    Column("status", String(20), nullable=False),  # deciding|queued|scheduled|held|suppressed
    Column("decision_id", String(40)),
    Column("outbox_id", String(40)),
    Column("answer", Json),
    _ts("locked_until"),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    Index("ix_notifications_customer_created", "customer_id", "created_at"),
)


# --- journeys with steps: each customer's enrolment, stepped by the workers (memory.enrolments) ---

#: The definition each journey version had when a customer entered it (they stay on it).
journey_versions = Table(
    "journey_versions",
    metadata,
    Column("journey", String(80), primary_key=True),
    Column("version", String(16), primary_key=True),
    # the journey as validated, and the texts of the templates it sends
    Column("definition", Json, nullable=False),
    _ts("created_at", nullable=False),
)

#: One customer's pass through a journey with steps.
enrolments = Table(
    "enrolments",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("journey", String(80), nullable=False),
    Column("version", String(16), nullable=False),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False),
    # treatment | holdout
    Column("arm", String(20), nullable=False),
    Column("status", String(20), nullable=False),  # active | exited
    # the step it is on (its wait, or the action about to run); the count of steps taken
    Column("step", String(40)),
    Column("seq", Integer, nullable=False),
    # when the current wait ends
    _ts("wait_until"),
    # the split steps' variants: {step: variant}
    Column("variants", Json, nullable=False),
    Column("trigger_event_id", String(80)),
    _ts("entered_at", nullable=False),
    _ts("exited_at"),
    # goal | completed | stage | handoff | opt_out | event:<type> | exit:<reason> | ...
    Column("exit_reason", String(120)),
    # the goal counts until then (entered_at + the goal's window)
    _ts("goal_until"),
    _ts("converted_at"),
    Column("goal_event_id", String(80)),
    _ts("updated_at", nullable=False),
    Index("ix_enrolments_journey_status", "journey", "status"),
    Index("ix_enrolments_customer_status", "customer_id", "status"),
)

#: What each step did for each enrolment: the funnel, the suppressions, the variants.
enrolment_steps = Table(
    "enrolment_steps",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("enrolment_id", String(40), ForeignKey("enrolments.id"), nullable=False),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False),
    Column("journey", String(80), nullable=False),
    Column("version", String(16), nullable=False),
    Column("step", String(40), nullable=False),
    Column("kind", String(20), nullable=False),
    # entered | waited | event | timeout | sent | suppressed | deferred | escalated | crm |
    # branch | variant | exited
    Column("outcome", String(40), nullable=False),
    # the branch taken, the variant, the chosen option
    Column("detail", String(120)),
    Column("reason_codes", Json, nullable=False),
    Column("decision_id", String(40)),
    _ts("at", nullable=False),
    # the order of the lines of one enrolment (several are written at the same ``at``)
    Column("position", Integer, nullable=False),
    Index("ix_enrolment_steps_journey_step", "journey", "step"),
    Index("ix_enrolment_steps_enrolment", "enrolment_id"),
)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL, foreign keys and their folder created."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def ping(engine: Engine) -> str:
    """Run ``SELECT 1``; the dialect's name (``sqlite``, ``postgresql``) when it answers."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return engine.dialect.name
