"""Segment's message formats as we accept them (identify, track, page, screen, group, alias,
batch): the pydantic models, how a track's or page's name becomes an event type, and the
per-message results. :mod:`journey.segment` maps the messages onto profiles and events."""


from __future__ import annotations

import logging
import re
import unicodedata
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from core.clock import known_zone
from core.domain import Channel, Identity
from journey.customers import LOCALE
from journey.event_input import (
    EventIn,
    within_limits,
)
from journey.turns import CustomerRef

log = logging.getLogger(__name__)

MessageType = Literal["identify", "track", "page", "screen", "group", "alias"]
MESSAGE_TYPES: tuple[MessageType, ...] = ("identify", "track", "page", "screen", "group", "alias")
#: The most messages one batch may hold (Segment's own limit is 500 KB per batch).
MAX_BATCH = 1000
#: Traits read into the profile's own fields or identities, not kept as attributes.
PROFILE_TRAITS = frozenset({"email", "phone", "name", "firstName", "lastName", "first_name",
                            "last_name", "timezone", "locale", "unsubscribed", "id"})
#: Engage's subscription types that are one of our channels.
SUBSCRIPTION_CHANNEL: dict[str, Channel] = {"EMAIL": "email", "SMS": "sms",
                                            "WHATSAPP": "whatsapp"}


class Refused(Exception):
    """A message that cannot be applied; ``errors`` name the fields."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


# --- the messages, as Segment's spec writes them ---------------------------------------------


def _stringify(value: Any) -> Any:
    """Segment ids may be numbers (``userId: 42``); we keep them as text."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _bounded(value: dict[str, Any]) -> dict[str, Any]:
    """``properties``/``traits`` within the limits ``/v1/events`` has, the field named."""
    return within_limits(value, "Segment")


def locale_of(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.replace("_", "-")  # en_US, as some SDKs write it
    if not LOCALE.match(value):
        raise ValueError(f"{value!r} is not a BCP 47 locale (e.g. en-US, pt-BR)")
    return value


SegmentId = Annotated[str, BeforeValidator(_stringify),
                      StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Bag = Annotated[dict[str, Any], AfterValidator(_bounded)]
Name = Annotated[str, StringConstraints(max_length=200)]


class Spec(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Subscription(Spec):
    """One of Engage's ``context.messaging_subscriptions``."""

    key: SegmentId
    type: str = Field(max_length=40)
    status: str = Field(max_length=40)

    @field_validator("status")
    @classmethod
    def _status(cls, value: str) -> str:
        value = value.upper()
        if value not in ("SUBSCRIBED", "UNSUBSCRIBED", "DID_NOT_SUBSCRIBE"):
            raise ValueError("must be SUBSCRIBED, UNSUBSCRIBED or DID_NOT_SUBSCRIBE")
        return value


class ConsentContext(Spec):
    """Segment's consent object: ``{"categoryPreferences": {"Marketing": false, …}}``."""

    category_preferences: dict[Annotated[str, StringConstraints(max_length=200)], bool] = Field(
        default_factory=dict, alias="categoryPreferences", max_length=100)


class Context(Spec):
    """The part of ``context`` we read; the rest is ignored (not stored)."""

    timezone: Annotated[str, AfterValidator(known_zone)] | None = Field(None, max_length=60)
    locale: Annotated[str, AfterValidator(locale_of)] | None = Field(None, max_length=35)
    traits: Bag = Field(default_factory=dict)
    consent: ConsentContext | None = None
    messaging_subscriptions: list[Subscription] = Field(default_factory=list, max_length=20)
    #: what analytics.js knows of the page (path, url, title…)
    page: dict[str, Any] = Field(default_factory=dict)


class Message(Spec):
    """What every message has. ``messageId`` is the idempotency key."""

    type: str | None = None
    message_id: str | None = Field(None, alias="messageId", min_length=1, max_length=60)
    user_id: SegmentId | None = Field(None, alias="userId")
    anonymous_id: SegmentId | None = Field(None, alias="anonymousId")
    timestamp: datetime | None = None
    sent_at: datetime | None = Field(None, alias="sentAt")
    context: Context = Field(default_factory=Context)

    @field_validator("timestamp", "sent_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a timezone (e.g. 2026-11-03T10:15:00Z)")
        return value

    @model_validator(mode="after")
    def _someone(self) -> Message:
        if self.user_id is None and self.anonymous_id is None:
            raise ValueError("give userId or anonymousId: a message is about someone")
        return self

    def identities(self) -> list[Identity]:
        found = [("external_id", self.user_id), ("anonymous_id", self.anonymous_id)]
        return [Identity(kind=k, value=v) for k, v in found if v]  # type: ignore[arg-type]


class Identify(Message):
    traits: Bag = Field(default_factory=dict)


class Track(Message):
    event: str = Field(min_length=1, max_length=200)
    properties: Bag = Field(default_factory=dict)


class Page(Message):
    name: Name | None = None
    category: Name | None = None
    properties: Bag = Field(default_factory=dict)


class Group(Message):
    group_id: SegmentId = Field(alias="groupId")
    traits: Bag = Field(default_factory=dict)


class Alias(Message):
    previous_id: SegmentId = Field(alias="previousId")
    user_id: SegmentId = Field(alias="userId")


MODELS: dict[MessageType, type[Message]] = {
    "identify": Identify, "track": Track, "page": Page, "screen": Page, "group": Group,
    "alias": Alias,
}


# --- into our events -------------------------------------------------------------------------


class SegmentPerson(CustomerRef):
    """A signal's customer named by Segment ids, as well as the identities of ``CustomerRef``."""

    external_id: str | None = None
    anonymous_id: str | None = None

    @model_validator(mode="after")
    def _one_identity(self) -> SegmentPerson:  # replaces CustomerRef's (same name)
        if not self.identities():
            raise ValueError("give userId or anonymousId")
        return self

    def identities(self) -> list[Identity]:
        found = [("external_id", self.external_id), ("anonymous_id", self.anonymous_id)]
        return super().identities() + [Identity(kind=k, value=v)  # type: ignore[arg-type]
                                        for k, v in found if v]


class SegmentEvent(EventIn):
    """An event for :meth:`SignalService.ingest`: a validated model instance passes through
    its validation as it is (pydantic does not revalidate instances), Segment ids and all."""

    customer: SegmentPerson


def event_type(name: str) -> str:
    """Our event type for a Segment event name: ``Order Completed``, ``orderCompleted`` and
    ``order-completed`` are all ``order_completed`` (accents dropped)."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", text)
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def page_slug(name: str | None, properties: dict[str, Any], page: dict[str, Any]) -> str:
    """What ``properties.page`` says a page is: its name as a type (``Pricing`` → ``pricing``),
    else its path without slashes (``/pricing/`` → ``pricing``, ``/docs/Setup`` →
    ``docs/setup``, ``/`` → ``/``), from the properties, ``context.page`` or the URL."""
    named = name or properties.get("name")
    if isinstance(named, str) and event_type(named):
        return event_type(named)
    for found in (properties.get("path"), page.get("path"), properties.get("url"),
                  page.get("url")):
        if isinstance(found, str) and found.strip():
            path = urlparse(found.strip()).path if "://" in found else found.strip()
            return path.strip("/").lower() or "/"
    return "/"


# --- results ---------------------------------------------------------------------------------


Status = Literal["accepted", "duplicate", "rejected"]


class ItemResult(BaseModel):
    index: int
    type: str | None = None
    #: the message's ``messageId``
    message_id: str | None = None
    status: Status
    customer_id: str | None = None
    #: our event (track, page, screen, group)
    event_type: str | None = None
    errors: list[str] = Field(default_factory=list)
    #: journeys the event fired
    fired: list[str] = Field(default_factory=list)
    #: the stage a lifecycle rule moved the customer to
    stage: str | None = None


class BatchResult(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[ItemResult]


# --- the service -----------------------------------------------------------------------------
