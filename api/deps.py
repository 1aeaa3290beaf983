"""Dependencies: the service container and API-key scopes, as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from journey.handoffs import Agent
from journey.runtime import Container
from journey.settings import ApiKey, Settings

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <api key>`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="or `X-API-Key: <key>`")


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.container.settings
    return settings


ContainerDep = Annotated[Container, Depends(get_container)]


def _key(
    bearer: HTTPAuthorizationCredentials | None, header: str | None, settings: Settings
) -> ApiKey:
    key = (bearer.credentials if bearer else None) or header
    if not key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    holder = settings.api_key(key)
    if holder is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "unknown API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return holder


def require(scope: str) -> Callable[..., str]:
    """A dependency that admits a request whose key has ``scope`` (or ``admin``)."""

    def check(
        settings: Annotated[Settings, Depends(get_settings_dep)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        header: Annotated[str | None, Security(_header)],
    ) -> str:
        holder = _key(bearer, header, settings)
        if scope in holder.scopes or "admin" in holder.scopes:
            return holder.name
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this API key lacks the scope {scope!r}")

    return check


def agent_for_key(settings: Settings, key: str) -> Agent | None:
    """The inbox agent a key stands for, or None (unknown key, or no inbox scope)."""
    holder = settings.api_key(key)
    return None if holder is None else agent_of(holder)


def agent_of(holder: ApiKey) -> Agent | None:
    scopes = set(holder.scopes)
    if "admin" in scopes or "inbox" in scopes:
        return Agent(name=holder.name)
    queues = frozenset(s.split(":", 1)[1] for s in scopes if s.startswith("inbox:"))
    return Agent(name=holder.name, queues=queues) if queues else None


def inbox_agent(
    settings: Annotated[Settings, Depends(get_settings_dep)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header: Annotated[str | None, Security(_header)],
) -> Agent:
    """The agent behind the request's key: a key with ``inbox`` (every queue),
    ``inbox:<queue>`` (those queues) or ``admin``."""
    agent = agent_of(_key(bearer, header, settings))
    if agent is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "this API key has no inbox scope: it needs 'inbox' or 'inbox:<queue>'",
        )
    return agent


InboxAgent = Annotated[Agent, Depends(inbox_agent)]
