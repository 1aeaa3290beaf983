"""A behavioural event as it comes in (``POST /v1/events``, Segment's ``track``): its fields,
the per-event limits on ``properties`` and ``traits``, and the per-event results of a batch.

Limits are checked by pydantic validators, so a bad event's errors name the field
(``properties.note: at most 2000 characters``) and the rest of its batch is still accepted
(:class:`journey.signals.SignalService`).
"""

from __future__ import annotations

import json
import math
import re
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.domain import Identity
from journey.turns import CustomerRef
from memory.profiles import canonical

EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_.:-]{0,79}$")
#: Events stamped further ahead than this are refused (clock skew is tolerated).
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_BATCH = 1000

# Per-event limits on ``properties`` and ``traits``. An event over one is rejected on its own,
# the error naming the field (``properties.note: at most 2000 characters``); the rest of its
# batch is still accepted. The whole request is bounded by ``Settings.max_body_bytes``.
#: The longest string value, at any depth.
MAX_PROPERTY_CHARS = 2000
#: The longest key.
MAX_KEY_CHARS = 200
#: How deep objects and lists may nest (``properties`` itself is level 1).
MAX_PROPERTY_DEPTH = 5
#: The most keys in one object, or items in one list.
MAX_PROPERTY_ENTRIES = 100
#: The most ``properties`` (and, apart, ``traits``) may weigh, as compact JSON in UTF-8.
MAX_PROPERTIES_BYTES = 16 * 1024

Loc = tuple[str | int, ...]


class EventIn(BaseModel):
    """One behavioural event: a page view, a download, a cart abandoned, an NPS answer."""

    id: str = Field(min_length=1, max_length=60, description="Your id; repeats are ignored.")
    type: str = Field(examples=["page_view"], description="lowercase, e.g. page_view")
    customer: CustomerRef
    properties: dict[str, Any] = Field(default_factory=dict, examples=[{"page": "pricing"}])
    traits: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, description="Profile attributes to set (null removes nothing)."
    )
    occurred_at: datetime | None = Field(None, description="ISO 8601 with a timezone; "
                                         "default: when it arrives.")

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if not EVENT_TYPE.match(value):
            raise ValueError("type must be lowercase letters, digits and _ . : - (max 80), "
                             "starting with a letter")
        return value

    @field_validator("properties", "traits")
    @classmethod
    def _within_limits(cls, value: dict[str, Any]) -> dict[str, Any]:
        return within_limits(value, "EventIn")

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("occurred_at needs a timezone (e.g. 2026-11-03T10:15:00Z)")
        return value


def within_limits(value: dict[str, Any], title: str) -> dict[str, Any]:
    """``value`` (an event's ``properties`` or ``traits``) if it keeps the per-event limits;
    otherwise a ``ValidationError`` naming the nested field that breaks one."""
    found = _over_limit(value)
    if found is None and _json_bytes(value) > MAX_PROPERTIES_BYTES:
        found = (), f"at most {MAX_PROPERTIES_BYTES} bytes as JSON"
    if found is not None:
        loc, message = found
        raise ValidationError.from_exception_data(title, [InitErrorDetails(
            type=PydanticCustomError("value_error", message), loc=loc, input=value,
        )])
    return value


def _over_limit(value: Any) -> tuple[Loc, str] | None:
    """The first place ``value`` breaks a per-event limit, and how (None: it does not)."""
    stack: list[tuple[Loc, Any, int]] = [((), value, 1)]
    while stack:
        loc, item, level = stack.pop()
        if isinstance(item, str) and len(item) > MAX_PROPERTY_CHARS:
            return loc, f"at most {MAX_PROPERTY_CHARS} characters"
        if isinstance(item, float) and not math.isfinite(item):
            return loc, "must be a finite number"  # JSON has no NaN; PostgreSQL refuses it
        if not isinstance(item, dict | list):
            continue
        if level > MAX_PROPERTY_DEPTH:
            return loc, f"nested deeper than {MAX_PROPERTY_DEPTH} levels"
        if len(item) > MAX_PROPERTY_ENTRIES:
            return loc, f"at most {MAX_PROPERTY_ENTRIES} entries"
        children = list(item.items() if isinstance(item, dict) else enumerate(item))
        if any(isinstance(k, str) and len(k) > MAX_KEY_CHARS for k, _ in children):
            return loc, f"keys are at most {MAX_KEY_CHARS} characters"
        stack.extend(((*loc, k), v, level + 1) for k, v in reversed(children))
    return None


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                          default=str).encode())


EventStatus = Literal["accepted", "duplicate", "rejected"]


class EventResult(BaseModel):
    index: int
    id: str | None = None
    status: EventStatus
    customer_id: str | None = None
    errors: list[str] = Field(default_factory=list)
    #: journeys this event fired (a job was queued for each)
    fired: list[str] = Field(default_factory=list)
    stage: str | None = None


class IngestResult(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResult]


def field_errors(exc: ValidationError) -> list[str]:
    """Each error of ``exc`` as ``field.path: message``."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        out.append(f"{loc}: {msg}" if loc else msg)
    return out


def known_customer(item: Any, customers: dict[str, CustomerRef]) -> Any:
    """``item`` with its ``customer`` replaced by the one validated before for the same JSON
    (remembered once this one validates)."""
    if not isinstance(item, dict) or not isinstance(item.get("customer"), dict):
        return item
    key = json.dumps(item["customer"], sort_keys=True, default=str)
    known = customers.get(key)
    if known is not None:
        return {**item, "customer": known}
    with suppress(ValidationError):  # if not, the event's own validation names the field
        customers[key] = CustomerRef.model_validate(item["customer"])
    return item


def canonical_all(identities: list[Identity],
                   memo: dict[tuple[str, str], Identity]) -> list[Identity]:
    """``memory.profiles.canonical_all``, each distinct identity made canonical once."""
    seen: dict[tuple[str, str], Identity] = {}
    for identity in identities:
        done = memo.get((identity.kind, identity.value))
        if done is None:
            done = memo[(identity.kind, identity.value)] = canonical(identity)
        seen.setdefault((done.kind, done.value), done)
    return list(seen.values())
