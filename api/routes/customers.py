"""GET /v1/customers/{id}: the unified profile with its CRM record, handoffs and outbox."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException

from api.deps import ContainerDep, require
from api.schemas import CustomerView

router = APIRouter(prefix="/v1", tags=["customers"])


@router.get("/customers/{customer_id}", response_model=CustomerView)
def get_customer(
    customer_id: str,
    container: ContainerDep,
    _key: Annotated[str, Depends(require("customers:read"))],
) -> CustomerView:
    store = container.store
    profile = store.get_customer(customer_id)
    if profile is None:
        raise HTTPException(404, f"no customer {customer_id!r}")
    return CustomerView(
        profile=profile,
        conversations=store.list_conversations(customer_id),
        handoffs=store.handoffs(customer_id),
        crm_activities=store.crm_activities(customer_id),
        outbox=store.outbox(customer_id),
    )
