"""Settings: every knob, read from the environment (prefix ``JOURNEY_``) and ``.env``.

This is the only module that reads the environment. Build a ``Settings`` explicitly in tests;
the app and the CLI use :func:`get_settings`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BrainName = Literal["auto", "rules", "openai", "local"]
LLMMode = Literal["auto", "tools", "json_schema", "json_object", "json_object_schema"]

ALL_SCOPES = (
    "messages:write", "customers:read", "conversations:read", "approvals:write", "admin"
)


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
    llm_timeout_s: float = Field(30.0, gt=0)
    llm_temperature: float = Field(0.0, ge=0, le=2)
    llm_max_tokens: int = Field(600, gt=0)

    api_keys: dict[str, list[str]] = Field(
        default_factory=dict,
        description='API keys and their scopes, JSON: {"key": ["messages:write", ...]}. '
        f"Scopes: {', '.join(ALL_SCOPES)}.",
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

    embedding_threads: int = Field(1, ge=1, le=16)
    max_text_chars: int = Field(4000, ge=1, description="Longest inbound text accepted.")

    @field_validator("policy_path", "local_model_path", mode="before")
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
        from journey.localllm import runtime_available

        return "local" if runtime_available() else "rules"


@lru_cache
def get_settings() -> Settings:
    return Settings()
