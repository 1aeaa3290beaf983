"""Settings: every knob, read from the environment (prefix ``JOURNEY_``) and ``.env``.

This is the only module that reads the environment. Build a ``Settings`` explicitly in tests;
the app and the CLI use :func:`get_settings`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.identity import phone_region

BrainName = Literal["auto", "rules", "openai", "local"]
LLMMode = Literal["auto", "tools", "json_schema", "json_object", "json_object_schema"]

ALL_SCOPES = (
    "messages:write", "customers:read", "customers:write", "conversations:read",
    "approvals:write", "notifications:write", "notifications:read", "inbox", "inbox:<queue>",
    "customers:erase", "admin",
)


class ApiKey(BaseModel):
    """An API key's holder: a name (an agent's, shown in the inbox) and scopes."""

    name: str = Field("", max_length=200)
    scopes: list[str] = Field(default_factory=list)


#: On PostgreSQL, the most turns one process may run at once (API and worker threads): each
#: holds two connections of the pool ``memory.db.make_engine`` opens (10 + 10 overflow), and a
#: couple stay free for the rest (the relay, the inbox, health checks).
PG_TURNS_AT_ONCE = 9


class Settings(BaseSettings):
    """journey-orchestrator's configuration. See README.md, section Configuration."""

    model_config = SettingsConfigDict(
        env_prefix="JOURNEY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(Path("data"), description="Where the embedded stores live.")
    database_url: str = Field(
        "",
        description="SQLAlchemy URL. Empty: an SQLite file in data_dir. "
        "PostgreSQL: postgresql+psycopg://user@host:5432/db",
    )
    chroma_url: str = Field(
        "",
        description="Chroma server, e.g. http://127.0.0.1:8000. Empty: embedded "
        "PersistentClient in data_dir/chroma.",
    )
    chroma_collection: str = "messages"
    vector_write_behind: bool = Field(
        True, description="Store messages in vector memory from a background thread, in "
        "batches (a turn does not wait for the upsert); this process's searches merge the "
        "records not stored yet. False: each turn waits for its upsert.")
    default_phone_region: str = Field(
        "US", min_length=2, max_length=2, pattern=r"^[A-Za-z]{2}$",
        description="The region (ISO 3166 alpha-2) a phone number written without its "
        "+<country code> is read in.")
    history_k: int = Field(6, ge=0, le=50, description="Retrieved history messages per turn.")

    brain: BrainName = Field(
        "auto",
        description="Who decides: 'local' (the embedded LLM, offline), 'openai' (any "
        "OpenAI-compatible endpoint), 'rules' (offline, no LLM); 'auto': openai when "
        "llm_base_url or llm_api_key is set, else local when llama-cpp-python is installed, "
        "else rules.",
    )
    local_model_path: Path | None = Field(
        None,
        description="A GGUF file for the local brain. Empty: the embedded "
        "Qwen2.5-Coder-0.5B-Instruct, assembled and verified into data_dir/models.",
    )
    local_port: int = Field(8765, ge=1, le=65535, description="Where the local model listens.")
    local_threads: int = Field(2, ge=1, le=64)
    local_context: int = Field(4096, ge=1024, description="The local model's context (tokens).")
    llm_base_url: str = Field("", description="OpenAI-compatible base URL, e.g. http://host/v1")
    llm_api_key: SecretStr = Field(SecretStr(""), description="API key for the LLM endpoint.")
    llm_model: str = Field("gpt-4o-mini", description="Model name sent to the endpoint.")
    llm_mode: LLMMode = Field(
        "auto",
        description="How the decision is constrained: 'tools' (native tool calling), "
        "'json_schema', 'json_object', 'json_object_schema' (llama.cpp's server). 'auto': tools "
        "for api.openai.com, json_object_schema for the local model, json_schema otherwise.",
    )
    llm_role: Literal["auto", "decide", "write"] = Field(
        "auto",
        description="What the model does: 'decide' (the whole decision: intent, stage, reply, "
        "tools), or 'write' (the rules and the policy decide, the model writes the reply from "
        "the retrieved facts in one schema-constrained call). 'auto': write for a local model "
        "under about 3B parameters (a GGUF file under 1.8 GB, as the embedded 0.5B one), "
        "decide for a larger one and for an OpenAI-compatible endpoint.",
    )
    llm_timeout_s: float = Field(30.0, gt=0)
    llm_temperature: float = Field(0.0, ge=0, le=2)
    llm_max_tokens: int = Field(600, gt=0)

    api_keys: dict[str, list[str] | ApiKey] = Field(
        default_factory=dict,
        description='API keys and their scopes, JSON: {"key": ["messages:write", ...]}, or '
        'with a name (an agent in the inbox): {"key": {"name": "Alice", "scopes": '
        '["inbox:support"]}}. '
        f"Scopes: {', '.join(ALL_SCOPES)}; inbox covers every queue, inbox:<queue> one.",
    )
    segment_write_keys: dict[str, str] = Field(
        default_factory=dict,
        description="Write keys for the Segment-compatible endpoints (/v1/batch, /v1/identify, "
        '/v1/track, /v1/page, /v1/alias…) and the source each stands for, JSON: {"<write key>": '
        '"website"}. Clients send the key as the HTTP Basic user (empty password) or as '
        "writeKey in the body. A write key can only send data in (it may sit in a web page), "
        "so it is not an API key. Empty: those endpoints answer 401.",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    server_url: str = Field("", description="Where `journey chat` finds the server.")
    cli_api_key: SecretStr = Field(SecretStr(""), description="The key `journey chat` sends.")

    policy_path: Path | None = Field(
        None,
        description="The policy YAML. Empty: the documented default, policy/default.yaml. "
        "Changes are picked up without a restart.",
    )

    journeys_path: Path | None = Field(
        None,
        description="The journeys YAML (triggers over signals). Empty: prompts/journeys.yaml. "
        "Changes are picked up without a restart.",
    )
    knowledge_path: Path | None = Field(
        None,
        description="The knowledge base YAML: what the bot may state (journey knowledge check "
        "validates one). Empty: the demo company's prompts/knowledge.yaml. Read at start-up: "
        "its questions are embedded once.",
    )
    knowledge_in_prompt: int = Field(
        40, ge=0, le=1000,
        description="The largest knowledge base a model gets whole in its system prompt; a "
        "larger one gives it the 5 entries retrieved for each message instead.",
    )
    notifications_path: Path | None = Field(
        None,
        description="The transactional message templates (POST /v1/notifications). Empty: "
        "prompts/notifications.yaml. Changes are picked up without a restart.",
    )

    max_concurrent_turns: int = Field(
        6, ge=1, le=64,
        description="Turns `POST /v1/messages` runs at once in one server process; more "
        "requests wait for a slot holding no thread and no database connection. A turn holds "
        "two PostgreSQL connections (its conversation's lock and the store's), so on PostgreSQL "
        "it plus JOURNEY_WORKERS may be at most 9 (checked at start-up).",
    )

    # --- the worker: scheduled actions, journey wake-ups, queued turns, the outbox relay ----
    workers: int = Field(
        1, ge=0, le=16,
        description="Worker threads `journey serve` starts (0: none; run `journey worker`).",
    )
    worker_poll_s: float = Field(0.5, gt=0, le=60, description="How often idle workers look.")
    job_lease_s: float = Field(
        120.0, gt=0, description="A claimed job or delivery not finished by then is retried."
    )
    outbox_max_attempts: int = Field(
        8, ge=1, le=100, description="Delivery attempts before a message is dead-lettered."
    )
    outbox_backoff_base_s: float = Field(2.0, gt=0, description="First retry delay (doubles).")
    outbox_backoff_max_s: float = Field(300.0, gt=0, description="Longest retry delay.")

    # --- channels ---------------------------------------------------------------------------
    public_url: str = Field(
        "",
        description="How providers reach this server (https://example.com). Twilio signs the "
        "URL it called, so behind a proxy set this. Empty: the URL the request arrived on.",
    )
    channel_transports: dict[str, str] = Field(
        default_factory=dict,
        description='Override the transport per channel, JSON: {"sms": "webhook"}. Transports: '
        "smtp, twilio, webhook, devbox, webchat. Default: smtp for email when smtp_host is set, "
        "twilio for sms (whatsapp) when twilio_account_sid and twilio_sms_from "
        "(twilio_whatsapp_from) are set, webchat for web_chat, else devbox (writes to "
        "data_dir/outbox/<channel>.jsonl). A named transport must be fully configured.",
    )
    smtp_host: str = ""
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = False
    smtp_timeout_s: float = Field(10.0, gt=0)
    email_from: str = Field("Journey <hello@journey.local>", description="From: of outbound email.")
    email_domain: str = Field("journey.local", description="The domain of our Message-IDs.")
    email_signing_key: SecretStr = Field(
        SecretStr(""),
        description="Mailgun-style webhook signing key for inbound email (HMAC-SHA256 of "
        "timestamp+token). Empty: inbound email needs an API key with messages:write.",
    )
    twilio_base_url: str = Field("https://api.twilio.com", description="Twilio's REST API.")
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_sms_from: str = Field("", description="The SMS sender number, e.g. +14155550199.")
    twilio_whatsapp_from: str = Field("", description="The WhatsApp sender, e.g. +14155550198.")
    webhook_url: str = Field("", description="Where the generic webhook transport posts.")
    webhook_secret: SecretStr = Field(
        SecretStr(""), description="Signs outbound and verifies inbound generic webhooks."
    )
    provider_timeout_s: float = Field(10.0, gt=0)
    handoff_webhook_url: str = Field(
        "",
        description="Where signed handoff events (created, claimed, reply, note, "
        "customer_message, resolved, returned) are POSTed, for a helpdesk or CRM to mirror "
        "the inbox. Empty: none.",
    )
    handoff_webhook_secret: SecretStr = Field(
        SecretStr(""), description="Signs handoff webhooks. Empty: webhook_secret."
    )
    crm_webhook_url: str = Field(
        "",
        description="Where signed profile changes (profile.updated, stage.changed, "
        "consent.changed, crm.activity, customer.erased) are POSTed, so a CRM stays in step. "
        "Empty: none.",
    )
    crm_webhook_secret: SecretStr = Field(
        SecretStr(""), description="Signs the CRM webhooks. Empty: webhook_secret."
    )
    session_secret: SecretStr = Field(
        SecretStr(""),
        description="Signs web-chat session tokens. Empty: a random key kept in "
        "data_dir/session.key.",
    )

    # --- erasure and retention ---------------------------------------------------------------
    erasure_salt: SecretStr = Field(
        SecretStr(""),
        description="The key of the hashes an erasure keeps of the identities it removed (so "
        "data naming an erased identity is refused). Empty: a random key generated once and "
        "kept in the database. Set it before the first erasure and keep it.",
    )
    retention_days: int = Field(
        0, ge=0, le=36500,
        description="Messages (with the turns decided on them) and behavioural events older "
        "than this many days are purged by the worker, with their checkpoints and vectors. "
        "0: kept forever.",
    )

    embedding_threads: int = Field(1, ge=1, le=16)
    max_text_chars: int = Field(4000, ge=1, description="Longest inbound text accepted.")
    max_body_bytes: int = Field(
        2 * 1024 * 1024, ge=1024,
        description="Largest request body accepted (413 beyond it); a batch of 1,000 events "
        "fits in the default.",
    )

    # --- abuse limits (the `limits` library; "" switches one off) ----------------------------
    rate_limit_storage: str = Field(
        "memory://",
        description="Where the counters live: memory:// (per process) or a limits storage URI "
        "such as redis://127.0.0.1:6379 (shared by every process).",
    )
    rate_limit_login: str = Field(
        "10/minute", description="Console sign-in attempts per client IP."
    )
    rate_limit_webchat_sessions: str = Field(
        "20/minute", description="Anonymous web-chat sessions started per client IP."
    )
    rate_limit_webchat_messages: str = Field(
        "30/minute", description="Web-chat messages per client IP (each may cost a model call)."
    )
    rate_limit_api: str = Field(
        "1200/minute",
        description="Requests per API key (and failed key checks per client IP).",
    )
    webchat_session_ttl_s: float = Field(
        86400.0, gt=0,
        description="How long a web-chat session token is valid after it was issued.",
    )

    @field_validator("policy_path", "local_model_path", "journeys_path", "knowledge_path",
                     mode="before")
    @classmethod
    def _empty_path_is_default(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("database_url")
    @classmethod
    def _normalise_pg_url(cls, value: str) -> str:
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    def api_key(self, key: str) -> ApiKey | None:
        """The holder of ``key`` (compared in constant time), or None."""
        found = None
        for known, spec in self.api_keys.items():
            if secrets.compare_digest(known.encode(), key.encode()):
                found = spec if isinstance(spec, ApiKey) else ApiKey(scopes=list(spec))
                if not found.name:  # a name that does not give away any of the key
                    digest = hashlib.sha256(known.encode()).hexdigest()[:8]
                    found = found.model_copy(update={"name": f"key-{digest}"})
        return found

    @field_validator("default_phone_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        return phone_region(value)  # checked at start-up, not at the first phone number

    @model_validator(mode="after")
    def _turns_fit_the_pool(self) -> Settings:
        """On PostgreSQL a running turn holds two of the pool's connections (its
        conversation's lock and the store's): more turns at once than half the pool deadlock
        it (every turn holding one connection, waiting for a second)."""
        running = self.max_concurrent_turns + self.workers
        if self.is_postgres and running > PG_TURNS_AT_ONCE:
            raise ValueError(
                f"JOURNEY_MAX_CONCURRENT_TURNS ({self.max_concurrent_turns}) + JOURNEY_WORKERS "
                f"({self.workers}) = {running} turns at once, over {PG_TURNS_AT_ONCE} on "
                f"PostgreSQL: each holds two of the pool's {2 * PG_TURNS_AT_ONCE + 2} "
                "connections; lower one of them (run more `journey worker` processes instead)")
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'journey.sqlite'}"

    @property
    def is_postgres(self) -> bool:
        return self.resolved_database_url.startswith("postgresql")

    @property
    def resolved_server_url(self) -> str:
        return self.server_url or f"http://{self.host}:{self.port}"

    @property
    def resolved_brain(self) -> Literal["rules", "openai", "local"]:
        if self.brain != "auto":
            return self.brain
        if self.llm_base_url or self.llm_api_key.get_secret_value():
            return "openai"
        return "local" if local_runtime_available() else "rules"


def local_runtime_available() -> bool:
    """Is llama-cpp-python (with its server), the embedded model's runtime, installed?"""
    return importlib.util.find_spec("llama_cpp") is not None


@lru_cache
def get_settings() -> Settings:
    return Settings()
