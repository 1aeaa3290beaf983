"""Dependencies as ``Annotated`` aliases: one per service a route uses (the store, the inbox,
the turn runner, …), API-key scopes and the rate limits.

A route names the services it needs (``store: StoreDep``), never the container that holds
them: its signature says what it touches, and a test can hand it other services. The services
are built once, at start-up, by ``journey.runtime.build_container``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from agent.knowledge import KnowledgeBase
from api.ratelimit import RateLimiter, Rule, key_id
from core.hub import Hub
from core.settings import ApiKey, Settings
from journey.customers import CustomerService
from journey.erasure import ErasureService
from journey.handoffs import Agent, HandoffService
from journey.notifications import NotificationService
from journey.runtime import Container
from journey.segment import SegmentService
from journey.signals import SignalService
from journey.turns import Orchestrator
from memory.store import Store
from policy.journeys import JourneysProvider
from policy.lifecycle import Lifecycle
from policy.loader import PolicyProvider

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <api key>`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="or `X-API-Key: <key>`")


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.container.settings
    return settings


def _service(name: str) -> Callable[[Request], Any]:
    def get(request: Request) -> Any:
        return getattr(request.app.state.container, name)

    get.__name__ = f"get_{name}"
    return get


#: The wiring itself: only for what describes the running server (``/v1/health``).
ContainerDep = Annotated[Container, Depends(get_container)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StoreDep = Annotated[Store, Depends(_service("store"))]
HandoffsDep = Annotated[HandoffService, Depends(_service("handoffs"))]
CustomersDep = Annotated[CustomerService, Depends(_service("customers"))]
ErasureDep = Annotated[ErasureService, Depends(_service("erasure"))]
TurnsDep = Annotated[Orchestrator, Depends(_service("orchestrator"))]
SignalsDep = Annotated[SignalService, Depends(_service("signals"))]
SegmentDep = Annotated[SegmentService, Depends(_service("segment"))]
PolicyDep = Annotated[PolicyProvider, Depends(_service("policy"))]
LifecycleDep = Annotated[Lifecycle, Depends(_service("lifecycle"))]
HubDep = Annotated[Hub, Depends(_service("hub"))]
KnowledgeDep = Annotated[KnowledgeBase, Depends(_service("knowledge"))]
NotificationsDep = Annotated[NotificationService, Depends(_service("notifications"))]
JourneysDep = Annotated[JourneysProvider, Depends(_service("journeys"))]


@dataclass(frozen=True)
class Caller:
    """Who sent the request, for the rate limits: the app's limiter and the client's address."""

    limiter: RateLimiter
    address: str

    def hit(self, rule: Rule) -> None:
        """Count this request against the client's address (429 when over)."""
        self.limiter.hit(rule, self.address)


def get_caller(request: Request) -> Caller:
    limiter: RateLimiter = request.app.state.limiter
    return Caller(limiter, request.client.host if request.client else "unknown")


CallerDep = Annotated[Caller, Depends(get_caller)]


def _key(
    bearer: HTTPAuthorizationCredentials | None, header: str | None, settings: Settings,
    caller: Caller | None,
) -> ApiKey:
    """The key's holder. With a ``caller``, the key's requests are counted by its hash, and
    missing or unknown keys by the client's address; an address over that limit is refused
    everything, so a right guess tells it nothing."""
    key = (bearer.credentials if bearer else None) or header
    if caller is not None:
        caller.limiter.check("api_key_failures", caller.address)
    if not key:
        if caller is not None:
            caller.hit("api_key_failures")
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    holder = settings.api_key(key)
    if holder is None:
        if caller is not None:
            caller.hit("api_key_failures")
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "unknown API key", headers={"WWW-Authenticate": "Bearer"}
        )
    if caller is not None:
        caller.limiter.hit("api", key_id(key))
    return holder


def require(scope: str, *also: str) -> Callable[..., str]:
    """A dependency that admits a request whose key has ``scope`` (or one of ``also``, or
    ``admin``), within the key's rate limit. Called directly, it limits only when given the
    ``caller`` (:func:`check_api_key` does that)."""

    def check(
        settings: Annotated[Settings, Depends(get_settings_dep)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        header: Annotated[str | None, Security(_header)],
        caller: Annotated[Caller | None, Depends(get_caller)] = None,
    ) -> str:
        holder = _key(bearer, header, settings, caller)
        if {scope, *also, "admin"} & set(holder.scopes):
            return holder.name
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this API key lacks the scope {scope!r}")

    return check


def check_api_key(request: Request, scope: str) -> str:
    """:func:`require`, rate limits included, for a route that needs a key only sometimes."""
    scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
    bearer = (
        HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials)
        if scheme.lower() == "bearer" and credentials else None
    )
    return require(scope)(get_settings_dep(request), bearer, request.headers.get("x-api-key"),
                          get_caller(request))


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
    caller: CallerDep,
) -> Agent:
    """The agent behind the request's key: a key with ``inbox`` (every queue),
    ``inbox:<queue>`` (those queues) or ``admin``; within the key's rate limit."""
    agent = agent_of(_key(bearer, header, settings, caller))
    if agent is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "this API key has no inbox scope: it needs 'inbox' or 'inbox:<queue>'",
        )
    return agent


InboxAgent = Annotated[Agent, Depends(inbox_agent)]
