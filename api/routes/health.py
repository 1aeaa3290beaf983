"""GET /v1/health: liveness with what the server runs on. No API key needed."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

import journey
from api.deps import ContainerDep
from api.schemas import Health

router = APIRouter(prefix="/v1", tags=["health"])


@router.get("/health", response_model=Health)
def health(container: ContainerDep) -> Health:
    with container.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    settings = container.settings
    return Health(
        status="ok",
        version=journey.__version__,
        database=container.engine.dialect.name,
        vector_memory="chroma-http" if settings.chroma_url else "chroma-embedded",
        brain=container.brain.name,
        model=(container.local_llm.model.stem if container.local_llm else settings.llm_model)
        if container.brain.name != "rules" else None,
        brain_note=container.brain_note,
    )
