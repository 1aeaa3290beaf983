"""GET /v1/health: liveness with what the server runs on. No API key needed."""

from __future__ import annotations

from fastapi import APIRouter

import journey
from api.deps import ContainerDep
from api.schemas import Health

router = APIRouter(prefix="/v1", tags=["health"])


@router.get("/health", response_model=Health)
def health(container: ContainerDep) -> Health:
    return Health(status="ok", version=journey.__version__, **container.health())
