"""The profile API's service: create or update a customer by any identity, look one up, and
read the consent ledger.

An upsert finds the profile by any identity it is given (several pointing at two profiles merge
them, as a message would), creates it when none matches, then applies the request in one
transaction: name, locale, timezone, channel preference, attributes (merged key by key), the
lifecycle stage (only forward in the lifecycle's order unless ``force``) and consent per channel
and purpose, each change recorded in the consent ledger with its source, who sent it, when the
customer gave it and any evidence.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.clock import TimezoneName, utc
from core.domain import Channel, CustomerProfile, Identity
from core.effects import CrmChange
from core.errors import Invalid, NotFound
from core.identity import EmailAddress, PhoneNumber
from memory.store import Store
from policy.lifecycle import Lifecycle

#: BCP 47, as far as a profile needs: a language, optionally a script and a region.
LOCALE = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z]{4})?(-([a-zA-Z]{2}|[0-9]{3}))?$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Identities(Strict):
    """Any of the identities the customer is known by; at least one."""

    email: EmailAddress | None = Field(None, max_length=320)
    phone: PhoneNumber | None = Field(None, max_length=40)
    web_chat_id: str | None = Field(None, min_length=1, max_length=200)
    crm_id: str | None = Field(None, min_length=1, max_length=200)
    external_id: str | None = Field(None, min_length=1, max_length=200,
                                    description="Your own id for the customer.")

    @model_validator(mode="after")
    def _one(self) -> Identities:
        if not self.all():
            raise ValueError("give at least one of email, phone, web_chat_id, crm_id, external_id")
        return self

    def all(self) -> list[Identity]:
        return [Identity(kind=kind, value=value)  # type: ignore[arg-type]
                for kind, value in self.model_dump(exclude_none=True).items()]


class ConsentGiven(Strict):
    """A consent status and where it came from."""

    status: Literal["granted", "revoked"]
    source: str = Field("api", min_length=1, max_length=80,
                        examples=["signup-form", "checkout", "support-call"])
    #: when the customer gave or withdrew it (default: now)
    at: datetime | None = None
    evidence: str | None = Field(None, max_length=2000,
                                 description="e.g. the form's URL and version, a ticket id")

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a timezone (e.g. 2026-11-01T10:00:00Z)")
        return value


class PurposeConsent(Strict):
    service: ConsentGiven | None = None
    marketing: ConsentGiven | None = None


class ProfileRequest(Strict):
    """``PUT /v1/customers``: every field but ``identities`` is optional; what is absent is
    left as it is."""

    identities: Identities
    name: str | None = Field(None, max_length=200)
    locale: str | None = Field(None, max_length=35, examples=["en-US"])
    timezone: TimezoneName | None = Field(None, max_length=60, examples=["America/New_York"])
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=100)
    lifecycle_stage: str | None = Field(None, max_length=60)
    force: bool = Field(False, description="Allow the stage to move backward.")
    channel_preference: Channel | None = None
    consent: dict[Channel, PurposeConsent] = Field(default_factory=dict)

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        if value is not None and not LOCALE.match(value):
            raise ValueError(f"{value!r} is not a BCP 47 locale (e.g. en-US, pt-BR, zh-Hant-TW)")
        return value



class Upserted(BaseModel):
    profile: CustomerProfile
    created: bool


class CustomerService:
    def __init__(self, store: Store, lifecycle: Lifecycle) -> None:
        self.store = store
        self.lifecycle = lifecycle

    def upsert(self, request: ProfileRequest, *, by: str) -> Upserted:
        """Create or update the customer ``request`` names; ``by`` is who sent it."""
        stages = self.lifecycle.stages
        if request.lifecycle_stage is not None and request.lifecycle_stage not in stages:
            raise Invalid(f"lifecycle_stage: {request.lifecycle_stage!r} is not a stage of "
                          f"the lifecycle ({', '.join(stages)})")
        identities = request.identities.all()
        existing = next((p for i in identities if (p := self.store.find_customer(i))), None)
        stage = request.lifecycle_stage
        if existing is not None and stage is not None and not request.force \
                and stages.index(stage) < stages.index(existing.lifecycle_stage):
            raise Invalid(f"lifecycle_stage: {stage!r} is before the customer's stage "
                          f"{existing.lifecycle_stage!r}; set force to move it back")
        profile, created = self.store.resolve_customer(
            identities, stage or self.lifecycle.default_stage,
            timezone=request.timezone or "", stages=stages)
        self._apply(profile.id, request, by=by)
        updated = self.store.get_customer(profile.id)
        if updated is None:  # pragma: no cover - it was just written
            raise NotFound(f"no customer {profile.id!r}")
        return Upserted(profile=updated, created=created)

    def _apply(self, customer_id: str, request: ProfileRequest, *, by: str) -> None:
        # consent in groups of one source, so each ledger row says where it came from
        groups: dict[tuple[str, datetime | None, str | None], dict[Channel, dict[str, Any]]] = {}
        for channel, purposes in request.consent.items():
            for purpose in ("service", "marketing"):
                given: ConsentGiven | None = getattr(purposes, purpose)
                if given is not None:
                    key = (given.source, given.at and utc(given.at), given.evidence)
                    groups.setdefault(key, {}).setdefault(channel, {})[purpose] = given.status
        changes = [CrmChange(stage=request.lifecycle_stage, fields=request.attributes)] + [
            CrmChange(consent=consent, consent_source=source, consent_by=by,
                      consent_at=at, consent_evidence=evidence)  # type: ignore[arg-type]
            for (source, at, evidence), consent in groups.items()
        ]
        self.store.update_profile(
            customer_id, changes, name=request.name, timezone=request.timezone,
            locale=request.locale, channel_preference=request.channel_preference)

    def lookup(self, identities: list[Identity]) -> CustomerProfile:
        """The one profile these identities belong to."""
        if not identities:
            raise Invalid("give one of email, phone, web_chat_id, crm_id, external_id")
        found = {p.id: p for i in identities if (p := self.store.find_customer(i))}
        if not found:
            raise NotFound("no customer with " + ", ".join(f"{i.kind} {i.value}"
                                                           for i in identities))
        if len(found) > 1:
            raise Invalid("these identities belong to different customers: "
                          + ", ".join(sorted(found)))
        return next(iter(found.values()))

    def consent(self, customer_id: str) -> list[dict[str, Any]]:
        live = self.store.live_customer_id(customer_id)
        if live is None:
            raise NotFound(f"no customer {customer_id!r}")
        return self.store.consent_ledger(live)
