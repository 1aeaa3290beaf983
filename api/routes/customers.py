"""The unified profile: create or update a customer by any identity (``PUT /v1/customers``),
look one up by an identity, read their whole record and their consent ledger, merge two."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel, Field

from api.deps import CustomersDep, ErasureDep, LifecycleDep, StoreDep, require
from api.schemas import CustomerView
from core.domain import CustomerProfile, Identity
from core.identity import InvalidIdentity, normal_identity
from journey.customers import ProfileRequest
from journey.erasure import Erasure

router = APIRouter(prefix="/v1", tags=["customers"])

_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"description": "a field is invalid (the message names it)"}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such customer"}}

CustomerId = Annotated[str, Path(max_length=40, description="The customer's id")]


@router.put(
    "/customers", response_model=CustomerProfile, status_code=200,
    responses={201: {"model": CustomerProfile, "description": "created"}, **_INVALID},
)
def put_customer(
    body: ProfileRequest,
    response: Response,
    customers: CustomersDep,
    key: Annotated[str, Depends(require("customers:write"))],
) -> CustomerProfile:
    """Create or update the customer any of `identities` names (several naming two profiles
    merge them). Absent fields are left as they are; `attributes` merge key by key; the
    `lifecycle_stage` only moves forward unless `force`. Each consent given is recorded in the
    customer's consent ledger with its `source`, `at`, `evidence` and the key's holder.
    `201` when the profile was created, `200` when it existed."""
    done = customers.upsert(body, by=key)
    response.status_code = 201 if done.created else 200
    return done.profile


def _identity(kind: str, value: str | None) -> Identity | None:
    if value is None:
        return None
    try:
        return Identity(kind=kind, value=normal_identity(kind, value))  # type: ignore[arg-type]
    except InvalidIdentity as exc:
        raise HTTPException(422, f"query.{kind}: {exc}") from None


IdentityQuery = Annotated[str | None, Query(min_length=1, max_length=320)]


@router.get("/customers", response_model=CustomerProfile, responses={**_INVALID, **_NOT_FOUND})
def find_customer(
    customers: CustomersDep,
    _key: Annotated[str, Depends(require("customers:read"))],
    email: IdentityQuery = None,
    phone: IdentityQuery = None,
    web_chat_id: IdentityQuery = None,
    crm_id: IdentityQuery = None,
    external_id: IdentityQuery = None,
) -> CustomerProfile:
    """The profile an identity belongs to (phones in any format, emails in any case). Several
    identities must name the same customer."""
    given = {"email": email, "phone": phone, "web_chat_id": web_chat_id, "crm_id": crm_id,
             "external_id": external_id}
    identities = [i for kind, value in given.items() if (i := _identity(kind, value))]
    return customers.lookup(identities)


class ConsentEvent(BaseModel):
    channel: str
    purpose: str
    previous: str
    status: str
    source: str
    by: str
    evidence: str | None
    #: when the customer gave or withdrew it
    at: datetime
    #: when it was recorded
    created_at: datetime


@router.get("/customers/{customer_id}/consent", response_model=list[ConsentEvent],
            responses=_NOT_FOUND)
def consent_ledger(
    customer_id: CustomerId,
    customers: CustomersDep,
    _key: Annotated[str, Depends(require("customers:read"))],
) -> list[dict[str, Any]]:
    """Every change of the customer's consent, oldest first: channel, purpose, the status
    before and after, its source, who recorded it, when it was given, and the evidence."""
    return customers.consent(customer_id)


@router.get("/customers/{customer_id}", response_model=CustomerView)
def get_customer(
    customer_id: CustomerId,
    store: StoreDep,
    erasure: ErasureDep,
    _key: Annotated[str, Depends(require("customers:read"))],
) -> CustomerView:
    profile = store.get_customer(customer_id)
    if profile is None:  # never known, or erased (the answer says when)
        raise HTTPException(404, erasure.missing(customer_id))
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


@router.get("/customers/{customer_id}/export", responses=_NOT_FOUND)
def export_customer(
    customer_id: CustomerId,
    erasure: ErasureDep,
    _key: Annotated[str, Depends(require("customers:read"))],
) -> dict[str, Any]:
    """Everything held about the customer, as JSON (GDPR art. 15 and 20): the profile and
    the profiles merged into it, identities, the consent ledger, conversations with their
    messages, decisions, approvals, handoffs with their events, outbox, CRM activities,
    behavioural events, jobs and merges. A merged id exports the profile it is now."""
    return erasure.export(customer_id)


@router.delete(
    "/customers/{customer_id}", response_model=Erasure,
    responses={404: {"description": "no such customer, and none erased under this id"}},
)
def erase_customer(
    customer_id: CustomerId,
    erasure: ErasureDep,
    key: Annotated[str, Depends(require("customers:erase"))],
) -> Erasure:
    """Erase the customer (GDPR art. 17, CCPA): their profile and every profile merged into
    it, identities, conversations and messages, decisions, approvals, outbox, CRM
    activities, handoffs and their events, behavioural events, jobs, the consent ledger,
    the checkpoints of their turns, their vector memory and the devbox files' lines — from
    the disk too. Answers the audit record that remains (no personal data: when, by whom,
    what was removed, keyed hashes of the identities). Erasing again answers the same
    record with `already: true`. Scope `customers:erase` (or `admin`)."""
    return erasure.erase(customer_id, by=key)
