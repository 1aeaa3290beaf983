"""The policy in force: show it, and reload it from its file now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException

from api.deps import PolicyDep, require
from api.schemas import PolicyView
from policy.loader import PolicyError, PolicyProvider

router = APIRouter(prefix="/v1", tags=["policy"])


def _view(provider: PolicyProvider) -> PolicyView:
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
    policy: PolicyDep,
    _key: Annotated[str, Depends(require("admin"))],
) -> PolicyView:
    """The effective policy (the file is re-read when it changes; an invalid edit is refused
    and reported in `last_reload_error` while the previous version stays in force)."""
    return _view(policy)


@router.post("/policy/reload", response_model=PolicyView)
def reload_policy(
    policy: PolicyDep,
    _key: Annotated[str, Depends(require("admin"))],
) -> PolicyView:
    """Re-read the policy file now; 422 with the problems (and their lines) if it is invalid."""
    try:
        policy.reload()
    except PolicyError as exc:
        raise HTTPException(
            422, f"{exc.source}: invalid policy; " + "; ".join(str(p) for p in exc.problems)
        ) from None
    return _view(policy)
