"""Behavioural signals in: validate, store once, update the profile, fire journeys.

``SignalService.ingest`` takes a batch of raw events (what ``POST /v1/events`` receives) and
handles each on its own: a bad event is rejected with its reasons, the good ones in the same
batch are accepted, an event id seen before is a duplicate (idempotent). For each new event:

1. the profile updates at once: ``traits`` set attributes, declared signals move intent scores,
   and the declared lifecycle rules may move the stage (recorded as a CRM activity);
2. journeys whose trigger now holds fire: a journey job is queued (due after the journey's
   delay, at most once per cool-down), and the customer's jobs with the tags it ``cancels``
   are cancelled.
"""

from __future__ import annotations

import json
import math
import re
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.clock import Clock
from core.domain import Event
from core.effects import Activity, CrmChange
from core.errors import IdentityErased
from journey.turns import CustomerRef
from memory.store import Store
from policy.journeys import JourneysProvider, apply_signals, trigger_holds
from policy.lifecycle import Lifecycle
from policy.loader import PolicyProvider
from policy.privacy import mask_all

EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_.:-]{0,79}$")
#: Events stamped further ahead than this are refused (clock skew is tolerated).
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_BATCH = 1000
#: How far back the triggers look (the longest sensible ``within``).
TRIGGER_LOOKBACK = timedelta(days=30)

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


@dataclass
class SignalService:
    store: Store
    journeys: JourneysProvider
    lifecycle: Lifecycle
    clock: Clock
    #: called after a journey job was queued, so an idle in-process worker wakes at once
    on_enqueue: Callable[[], None] | None = None
    #: the policy whose ``privacy`` section masks what events carry (None: nothing masked)
    policy: PolicyProvider | None = None

    def __post_init__(self) -> None:
        # one customer's events are handled one at a time (cool-downs, score updates)
        self._locks = [threading.Lock() for _ in range(64)]

    def ingest(self, raw: list[Any]) -> IngestResult:
        results: list[EventResult] = []
        for index, item in enumerate(raw):
            ident = item.get("id") if isinstance(item, dict) else None
            try:
                event = EventIn.model_validate(item)
            except ValidationError as exc:
                results.append(EventResult(index=index, id=ident if isinstance(ident, str)
                                           else None, status="rejected", errors=field_errors(exc)))
                continue
            now = self.clock.now()
            at = event.occurred_at or now
            if at > now + FUTURE_TOLERANCE:
                results.append(EventResult(
                    index=index, id=event.id, status="rejected",
                    errors=[f"occurred_at: {at.isoformat()} is in the future"],
                ))
                continue
            key = next((f"{i.kind}:{i.value}" for i in event.customer.identities()), "")
            with self._locks[zlib.crc32(key.encode()) % len(self._locks)]:
                try:
                    results.append(self._one(index, event, at))
                except IdentityErased as exc:  # a late event must not recreate the person
                    results.append(EventResult(index=index, id=event.id, status="rejected",
                                               errors=[f"customer.{exc.detail}"]))
        count = {s: sum(r.status == s for r in results) for s in ("accepted", "duplicate",
                                                                   "rejected")}
        return IngestResult(accepted=count["accepted"], duplicates=count["duplicate"],
                            rejected=count["rejected"], results=results)

    def _one(self, index: int, event: EventIn, at: datetime) -> EventResult:
        store = self.store
        if self.policy is not None:
            # card numbers and secrets are masked before the event or the profile keeps them
            privacy = self.policy.get().privacy
            event = event.model_copy(update={
                "properties": mask_all(event.properties, privacy),
                "traits": mask_all(event.traits, privacy),
            })
        profile, _ = store.resolve_customer(
            event.customer.identities(), self.lifecycle.default_stage, timezone="",
            stages=self.lifecycle.stages,
        )
        stored = Event(id=event.id, customer_id=profile.id, type=event.type,
                       properties=event.properties, occurred_at=at)
        if not store.add_event(stored):
            return EventResult(index=index, id=event.id, status="duplicate",
                               customer_id=profile.id)
        journeys = self.journeys.get()
        # an event stamped a little ahead (clock skew) is judged at its own time
        now = max(self.clock.now(), at)
        events = store.recent_events(profile.id, since=now - TRIGGER_LOOKBACK, limit=500)
        change = CrmChange()
        traits = {k: v for k, v in event.traits.items() if v is not None}
        if event.customer.name and not profile.name:
            name = event.customer.name
            store.update_customer(profile.id, name=mask_all(name, self.policy.get().privacy)
                                  if self.policy is not None else name)
        scores = dict(profile.attributes.get("intent_scores") or {})
        new_scores = apply_signals(journeys, scores, [stored])
        if traits or new_scores != scores:
            change.fields = {**traits, **({"intent_scores": new_scores}
                                          if new_scores != scores else {})}
        updated = profile.model_copy(update={
            "attributes": {**profile.attributes, **change.fields}
        })
        stage, rule = self.lifecycle.next_stage(updated, None, events, now, signal=stored)
        activities = []
        if rule is not None:
            change.stage = stage
            activities.append(Activity(
                id=store.ids("act"), kind="stage_change",
                body={"from": profile.lifecycle_stage, "to": stage, "rule": rule,
                      "event_id": event.id},
            ))
        if change.fields or change.stage:
            store.apply_profile_change(profile.id, change, activities)
            updated = updated.model_copy(update={"lifecycle_stage": stage})
        fired = self._fire(updated, stored, events, journeys, now)
        return EventResult(index=index, id=event.id, status="accepted",
                           customer_id=profile.id, fired=fired,
                           stage=stage if rule else None)

    def _fire(self, profile: Any, event: Event, events: list[Event], journeys: Any,
              now: datetime) -> list[str]:
        fired = []
        jobs = self.store.jobs
        for journey in journeys.for_event(event.type):
            matching = trigger_holds(journey, profile, events, now)
            if event.id not in {e.id for e in matching}:
                continue
            if jobs.fired_since(profile.id, journey.name, now - journey.cooldown):
                continue
            cancelled = jobs.cancel(
                profile.id, tags=journey.cancels,
                reason=f"replaced: journey {journey.name} fired on event {event.id}",
            ) if journey.cancels else []
            trigger = {
                "journey": journey.name, "version": journeys.version,
                "event_id": event.id, "event_type": event.type,
                "events": [e.id for e in matching][:20],
                "fired_at": now.isoformat(),
                "description": journey.description or journey.name,
                "cancelled_jobs": [j.id for j in cancelled],
            }
            _, created = jobs.enqueue(
                "journey", f"journey:{journey.name}:{profile.id}:{event.id}", trigger,
                due_at=now + journey.delay, customer_id=profile.id, journey=journey.name,
                tag=journey.tag,
            )
            if created:
                fired.append(journey.name)
        if fired and self.on_enqueue is not None:
            self.on_enqueue()
        return fired
