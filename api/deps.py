"""Dependencies: the service container and API-key scopes, as ``Annotated`` aliases."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from journey.runtime import Container
from journey.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <api key>`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="or `X-API-Key: <key>`")


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.container.settings
    return settings


ContainerDep = Annotated[Container, Depends(get_container)]


def require(scope: str) -> Callable[..., str]:
    """A dependency that admits a request whose key has ``scope`` (or ``admin``)."""

    def check(
        settings: Annotated[Settings, Depends(get_settings_dep)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        header: Annotated[str | None, Security(_header)],
    ) -> str:
        key = (bearer.credentials if bearer else None) or header
        if not key:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        for known, scopes in settings.api_keys.items():
            if secrets.compare_digest(known.encode(), key.encode()):
                if scope in scopes or "admin" in scopes:
                    return known
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN, f"this API key lacks the scope {scope!r}"
                )
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "unknown API key", headers={"WWW-Authenticate": "Bearer"}
        )

    return check
