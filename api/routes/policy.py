"""The policy in force: show it, and reload it from its file now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException

from api.deps import ContainerDep, require
from api.schemas import PolicyView
from policy.loader import PolicyError

router = APIRouter(prefix="/v1", tags=["policy"])


def _view(container: ContainerDep) -> PolicyView:
    provider = container.policy
    policy = provider.get()
    error = provider.last_error
    return PolicyView(
        source=str(provider.path),
        version=policy.version,
        last_reload_error=[str(p) for p in error.problems] if error else None,
        policy=policy.model_dump(mode="json"),
    )


@router.get("/policy", response_model=PolicyView)
def get_policy(
    container: ContainerDep,
    _key: Annotated[str, Depends(require("admin"))],
) -> PolicyView:
    """The effective policy (the file is re-read when it changes; an invalid edit is refused
    and reported in `last_reload_error` while the previous version stays in force)."""
    return _view(container)


@router.post("/policy/reload", response_model=PolicyView)
def reload_policy(
    container: ContainerDep,
    _key: Annotated[str, Depends(require("admin"))],
) -> PolicyView:
    """Re-read the policy file now; 422 with the problems (and their lines) if it is invalid."""
    try:
        container.policy.reload()
    except PolicyError as exc:
        raise HTTPException(
            422, f"{exc.source}: invalid policy; " + "; ".join(str(p) for p in exc.problems)
        ) from None
    return _view(container)
