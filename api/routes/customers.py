"""GET /v1/customers/{id}: the unified profile with its CRM record, handoffs and outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field

from api.deps import LifecycleDep, StoreDep, require
from api.schemas import CustomerView

router = APIRouter(prefix="/v1", tags=["customers"])

CustomerId = Annotated[str, Path(max_length=40, description="The customer's id")]


@router.get("/customers/{customer_id}", response_model=CustomerView)
def get_customer(
    customer_id: CustomerId,
    store: StoreDep,
    _key: Annotated[str, Depends(require("customers:read"))],
) -> CustomerView:
    profile = store.get_customer(customer_id)
    if profile is None:
        raise HTTPException(404, f"no customer {customer_id!r}")
    # a merged id answers with the profile it was merged into
    return CustomerView(
        profile=profile,
        conversations=store.list_conversations(profile.id),
        handoffs=store.handoffs(profile.id),
        crm_activities=store.crm_activities(profile.id),
        outbox=store.outbox(profile.id),
        merges=store.merges(profile.id),
        jobs=[j.model_dump(mode="json") for j in store.jobs.list(customer_id=profile.id)],
        events=store.recent_events(profile.id, since=datetime(1970, 1, 1, tzinfo=UTC),
                                   limit=50),
    )


class MergeRequest(BaseModel):
    merge: str = Field(min_length=1, max_length=40, description="The profile to merge in.")
    reason: str = Field(min_length=1, max_length=500, examples=["same person, confirmed by phone"])
    by: str = Field(min_length=1, max_length=200, description="Who merges (audit).")


@router.post(
    "/customers/{customer_id}/merge",
    responses={404: {"description": "no such customer"}, 409: {"description": "not mergeable"}},
)
def merge_customers(
    customer_id: CustomerId,
    body: MergeRequest,
    store: StoreDep,
    lifecycle: LifecycleDep,
    _key: Annotated[str, Depends(require("admin"))],
) -> dict[str, Any]:
    """Merge profile `merge` into this one: identities, conversations, messages, events,
    decisions, outbox, handoffs and CRM history all move; consent keeps any revocation; the
    merged id keeps resolving here. Recorded in the profile's `merges`. Merging again is a
    no-op that returns the first record."""
    survivor = store.live_customer_id(customer_id)
    merged = store.live_customer_id(body.merge)
    if survivor is None or merged is None:
        raise HTTPException(404, f"no customer {customer_id if survivor is None else body.merge!r}")
    if survivor == merged:
        done = [m for m in store.merges(survivor) if m["merged_id"] == body.merge]
        if done:
            return done[0]
        raise HTTPException(409, "cannot merge a profile into itself")
    return store.merge_customers(survivor, merged, reason=body.reason, by=body.by,
                                 stages=lifecycle.stages)
