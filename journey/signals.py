"""Behavioural signals in: validate, store once, update the profile, fire journeys.

``SignalService.ingest`` takes a batch of raw events (what ``POST /v1/events`` receives) and
handles each on its own: a bad event is rejected with its reasons, the good ones in the same
batch are accepted, an event id seen before is a duplicate (idempotent). For each new event:

1. the profile updates at once: ``traits`` set attributes, declared signals move intent scores,
   and the declared lifecycle rules may move the stage (recorded as a CRM activity);
2. journeys whose trigger now holds fire: a journey job is queued (due after the journey's
   delay, at most once per cool-down), and the customer's jobs with the tags it ``cancels``
   are cancelled.

A batch is handled set-based, in one transaction (:meth:`SignalService._set_based`, the SQL in
``memory.events``): the identities are resolved in one query (new customers created in bulk),
the profiles, their recent events, cool-downs and cancellable jobs read once, then each
event is judged in memory in order, by the same pure functions as one event alone
(``apply_signals``, ``Lifecycle.next_stage``, ``trigger_holds``), and everything it decided
is written with one ``executemany`` per table. A batch whose identities join two profiles
(a merge) goes event by event, as does one a concurrent writer got in the way of.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from core.clock import Clock
from core.domain import CustomerProfile, Decision, Event, Identity
from core.effects import Activity, CrmChange
from core.errors import IdentityErased
from journey import stage_events
from journey.event_input import (
    FUTURE_TOLERANCE,
    EventIn,
    EventResult,
    IngestResult,
    canonical_all,
    field_errors,
    known_customer,
)
from journey.turns import CustomerRef
from memory.events import BatchConflict, BatchProfile, BatchWrites, PendingJob
from memory.store import Store
from memory.sync import Change, activity_changes
from policy.journeys import JourneysProvider, apply_signals, trigger_holds
from policy.lifecycle import Lifecycle
from policy.loader import PolicyProvider
from policy.privacy import mask_all

#: How far back the triggers look (the longest sensible ``within``).
TRIGGER_LOOKBACK = timedelta(days=30)


class _NeedsMerge(Exception):
    """The batch's identities join two profiles: it goes event by event (which merges)."""


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
    #: a batch set-based in one transaction (False: each event on its own, as before)
    batched: bool = True
    #: called with the accepted events and the journeys each customer's events fired
    #: (journeys with steps count their goals and wake their waits)
    after_events: Callable[[list[Event], dict[str, list[str]]], None] | None = None

    def __post_init__(self) -> None:
        # one customer's events are handled one at a time (cool-downs, score updates)
        self._locks = [threading.Lock() for _ in range(64)]

    def ingest(self, raw: list[Any]) -> IngestResult:
        results: dict[int, EventResult] = {}
        valid: list[tuple[int, EventIn, datetime]] = []
        # a batch names few people many times: each one's ``customer`` is validated once
        # (an email's check is most of an event's); one that fails is not kept
        customers: dict[str, CustomerRef] = {}
        for index, item in enumerate(raw):
            ident = item.get("id") if isinstance(item, dict) else None
            try:
                event = EventIn.model_validate(known_customer(item, customers))
            except ValidationError as exc:
                results[index] = EventResult(index=index, id=ident if isinstance(ident, str)
                                             else None, status="rejected",
                                             errors=field_errors(exc))
                continue
            now = self.clock.now()
            at = event.occurred_at or now
            if at > now + FUTURE_TOLERANCE:
                results[index] = EventResult(
                    index=index, id=event.id, status="rejected",
                    errors=[f"occurred_at: {at.isoformat()} is in the future"],
                )
                continue
            valid.append((index, event, at))
        done = self._batch(valid) if self.batched and valid else None
        if done is None:
            done = [self._locked_one(index, event, at) for index, event, at in valid]
        results.update((r.index, r) for r in done)
        if self.after_events is not None:
            self._after(valid, results)
        self._stage_events(valid, results)
        ordered = [results[i] for i in sorted(results)]
        count = {s: sum(r.status == s for r in ordered) for s in ("accepted", "duplicate",
                                                                   "rejected")}
        return IngestResult(accepted=count["accepted"], duplicates=count["duplicate"],
                            rejected=count["rejected"], results=ordered)

    def _after(self, valid: list[tuple[int, EventIn, datetime]],
               results: dict[int, EventResult]) -> None:
        accepted = []
        fired: dict[str, list[str]] = {}
        for index, event, at in valid:
            result = results[index]
            if result.status != "accepted" or not result.customer_id:
                continue
            accepted.append(Event.model_construct(
                id=event.id, customer_id=result.customer_id, type=event.type,
                properties=event.properties, occurred_at=at))
            if result.fired:
                fired.setdefault(result.customer_id, []).extend(result.fired)
        if accepted and self.after_events is not None:
            self.after_events(accepted, fired)

    def _stage_events(self, valid: list[tuple[int, EventIn, datetime]],
                      results: dict[int, EventResult]) -> None:
        """The stages these events moved, as events (:mod:`journey.stage_events`)."""
        if stage_events.wanted(self.journeys.get()) and \
                (derived := stage_events.from_events(valid, results)):
            self.ingest(derived)

    def stage_moved(self, decision: Decision) -> None:
        """A turn moved the customer's stage: the same event, as for the stages signals move."""
        if decision.stage != decision.previous_stage and \
                stage_events.wanted(self.journeys.get()) and (derived := stage_events.from_decision(
                    decision, self.store.get_customer(decision.customer_id))):
            self.ingest(derived)

    def _lock_for(self, event: EventIn) -> threading.Lock:
        key = next((f"{i.kind}:{i.value}" for i in event.customer.identities()), "")
        return self._locks[zlib.crc32(key.encode()) % len(self._locks)]

    def _locked_one(self, index: int, event: EventIn, at: datetime) -> EventResult:
        """One event on its own (the path a batch that joins profiles falls back to)."""
        with self._lock_for(event):
            try:
                return self._one(index, event, at)
            except IdentityErased as exc:  # a late event must not recreate the person
                return EventResult(index=index, id=event.id, status="rejected",
                                   errors=[f"customer.{exc.detail}"])

    def _batch(self, valid: list[tuple[int, EventIn, datetime]]) -> list[EventResult] | None:
        """The events of one batch, set-based in one transaction, each judged as if it came
        alone and in order; None when the batch must go event by event (its identities join
        two profiles, which needs a merge, or a concurrent writer got in the way)."""
        locks = sorted({id(lock): lock for _, e, _ in valid
                        for lock in [self._lock_for(e)]}.values(), key=self._locks.index)
        with ExitStack() as stack:
            for lock in locks:
                stack.enter_context(lock)
            try:
                return self._set_based(valid)
            except (_NeedsMerge, BatchConflict):
                return None

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
                "event_at": event.occurred_at.isoformat(),
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

    def _set_based(self, valid: list[tuple[int, EventIn, datetime]]) -> list[EventResult]:
        """:meth:`_one` for every event of the batch, with the reads and writes in bulk."""
        store = self.store
        privacy = self.policy.get().privacy if self.policy is not None else None
        if privacy is not None:
            valid = [(index, event.model_copy(update={
                "properties": mask_all(event.properties, privacy),
                "traits": mask_all(event.traits, privacy),
            }), at) for index, event, at in valid]
        results: dict[int, EventResult] = {}
        # data naming an erased identity is refused, event by event
        raw = list({(i.kind, i.value): i for _, e, _ in valid
                    for i in e.customer.identities()}.values())
        erased: dict[tuple[str, str], IdentityErased] = {}
        if store.erasure.erased(raw) is not None:
            for identity in raw:
                found = store.erasure.erased([identity])
                if found is not None:
                    erased[(identity.kind, identity.value)] = IdentityErased(found[0].kind,
                                                                             found[1])
        items: list[tuple[int, EventIn, datetime, list[Identity]]] = []
        canon: dict[tuple[str, str], Identity] = {}  # a batch names few people, many times
        for index, event, at in valid:
            refused = next((erased[(i.kind, i.value)] for i in event.customer.identities()
                            if (i.kind, i.value) in erased), None)
            if refused is not None:
                results[index] = EventResult(index=index, id=event.id, status="rejected",
                                             errors=[f"customer.{refused.detail}"])
            else:
                items.append((index, event, at, canonical_all(event.customer.identities(),
                                                               canon)))
        now = self.clock.now()
        journeys = self.journeys.get()
        # a customer's CRM sync events and activities are stamped a microsecond apart in the
        # order they were decided (the sync is delivered in that order, as with a transaction
        # per event), then moved back so the customer's last one is ``now`` (due at once)
        ticks: dict[str, Iterator[int]] = {}

        def ticker(cid: str) -> Callable[[], datetime]:
            count = ticks.setdefault(cid, itertools.count())
            return lambda: now + timedelta(microseconds=next(count))

        w = BatchWrites()
        fired_any = False
        with store.event_batch() as b:
            # who each event is: the profile holding its identities, or a new one
            owner = b.owners((i.kind, i.value) for *_, idents in items for i in idents)
            created: dict[str, BatchProfile] = {}
            who: list[str] = []
            sync_rows: list[dict[str, Any]] = []
            for *_, idents in items:
                cids = list(dict.fromkeys(owner[k] for i in idents
                                          if (k := (i.kind, i.value)) in owner))
                if len(cids) > 1:
                    raise _NeedsMerge
                if cids:
                    cid = cids[0]
                else:
                    cid = store.ids("cus")
                    created[cid] = BatchProfile(id=cid, name=None, created=True,
                                                lifecycle_stage=self.lifecycle.default_stage,
                                                attributes={})
                    sync_rows += b.sync_rows(cid, [("profile.updated", {"created": True})],
                                             now=ticker(cid))
                for i in idents:
                    if (i.kind, i.value) not in owner:
                        owner[(i.kind, i.value)] = cid
                        w.identities.append({"customer_id": cid, "kind": i.kind,
                                             "value": i.value})
                who.append(cid)
            existing = sorted(set(who) - set(created))
            profiles = {**b.profiles(existing), **created}
            stored_ids = b.stored_event_ids([e.id for _, e, _, _ in items])
            since = min((max(now, at) for _, _, at, _ in items), default=now) - TRIGGER_LOOKBACK
            # the rules and triggers count only some event types, each within a window
            earliest = min((max(now, at) for _, _, at, _ in items), default=now)
            needed: dict[str, datetime] = {}
            for j in journeys.journeys:
                if j.enabled:
                    needed[j.trigger.event] = min(needed.get(j.trigger.event, earliest),
                                                  earliest - j.trigger.within)
            for stage_rule in self.lifecycle.rules:
                cond = stage_rule.when.event
                if cond is None:
                    continue
                for kind in [cond.type] if isinstance(cond.type, str) else cond.type:
                    needed[kind] = min(needed.get(kind, earliest),
                                       earliest - timedelta(minutes=cond.within_minutes))
            history = b.recent_events(existing, since, needed=needed,
                                      adding=dict(Counter(who)))
            for cid in created:
                history[cid] = []
            names = sorted({j.name for j in journeys.journeys if j.enabled})
            last_fired = b.last_fired(existing, names)
            tags = sorted({t for j in journeys.journeys for t in j.cancels})
            pending = b.pending_tagged(existing, tags, [])
            for cid in created:
                pending[cid] = []
            taken = b.stored_dedupe_keys([
                _journey_key(j.name, cid, e.id)
                for (_, e, _, _), cid in zip(items, who, strict=True)
                for j in journeys.for_event(e.type)])
            new_jobs: dict[str, dict[str, Any]] = {}
            seen: set[str] = set()
            seen_as = {cid: CustomerProfile.model_construct(
                id=cid, name=p.name, identities=[], attributes=p.attributes,
                lifecycle_stage=p.lifecycle_stage, consent={}, timezone="", locale="",
                channel_preference=None, created_at=now, updated_at=now)
                for cid, p in profiles.items()}
            for (index, event, at, _), cid in zip(items, who, strict=True):
                p = profiles[cid]
                if event.id in stored_ids or event.id in seen:
                    results[index] = EventResult(index=index, id=event.id,
                                                 status="duplicate", customer_id=cid)
                    continue
                seen.add(event.id)
                # validated as ``EventIn`` already
                stored = Event.model_construct(id=event.id, customer_id=cid, type=event.type,
                                               properties=event.properties, occurred_at=at)
                w.events.append({"id": event.id, "customer_id": cid, "type": event.type,
                                 "properties": event.properties, "occurred_at": at})
                hist = history[cid]
                bisect.insort(hist, stored, key=_newest_first)
                event_now = max(now, at)
                older = bisect.bisect_right(  # the events since the trigger look-back
                    hist, -(event_now - TRIGGER_LOOKBACK).timestamp(), key=_newest_first)
                events = hist[:min(older, 500)]
                changes: list[Change] = []
                if event.customer.name and not p.name:
                    name = event.customer.name
                    p.name = mask_all(name, privacy) if privacy is not None else name
                    p.changed = True
                    sync_rows += b.sync_rows(cid, [("profile.updated", {"name": p.name})],
                                             now=ticker(cid))
                traits = {k: v for k, v in event.traits.items() if v is not None}
                scores = dict(p.attributes.get("intent_scores") or {})
                new_scores = apply_signals(journeys, scores, [stored])
                fields: dict[str, Any] = {}
                if traits or new_scores != scores:
                    fields = {**traits, **({"intent_scores": new_scores}
                                           if new_scores != scores else {})}
                attributes = {**p.attributes, **fields}
                # what the rules read of a profile: its stage and attributes
                updated = seen_as[cid]
                updated.attributes, updated.lifecycle_stage = attributes, p.lifecycle_stage
                stage, rule = self.lifecycle.next_stage(updated, None, events, event_now,
                                                        signal=stored)
                activities = []
                if rule is not None:
                    changes.append(("stage.changed", {"from": p.lifecycle_stage, "to": stage}))
                    activities.append(Activity(
                        id=store.ids("act"), kind="stage_change",
                        body={"from": p.lifecycle_stage, "to": stage, "rule": rule,
                              "event_id": event.id},
                    ))
                if fields or rule is not None:
                    diff = {k: v for k, v in attributes.items()
                            if k not in p.attributes or p.attributes[k] != v}
                    if diff:
                        changes.append(("profile.updated", {"attributes": diff}))
                    w.activities += [{"id": a.id, "customer_id": cid, "decision_id": None,
                                      "kind": a.kind, "body": a.body, "done": True,
                                      "created_at": ticker(cid)()} for a in activities]
                    sync_rows += b.sync_rows(cid, changes + activity_changes(activities, None),
                                             now=ticker(cid))
                    p.attributes = attributes
                    p.lifecycle_stage = stage
                    p.changed = True
                    updated.lifecycle_stage = stage
                fired = []
                for journey in journeys.for_event(stored.type):
                    matching = trigger_holds(journey, updated, events, event_now)
                    if stored.id not in {e.id for e in matching}:
                        continue
                    last = last_fired.get((cid, journey.name))
                    if last is not None and last >= event_now - journey.cooldown:
                        continue
                    reason = f"replaced: journey {journey.name} fired on event {stored.id}"
                    cancelled = []
                    if journey.cancels:
                        for job in [j for j in pending[cid] if j.tag in journey.cancels]:
                            pending[cid].remove(job)
                            cancelled.append(job.id)
                            if job.new:
                                new_jobs[job.id].update(status="cancelled", error=reason[:2000])
                            else:
                                w.cancelled.append((job.id, reason))
                    key = _journey_key(journey.name, cid, stored.id)
                    if key in taken:
                        continue
                    taken.add(key)
                    job_id = store.ids("job")
                    new_jobs[job_id] = dict(
                        id=job_id, kind="journey", customer_id=cid, dedupe_key=key,
                        due_at=event_now + journey.delay, status="pending", attempts=0,
                        journey=journey.name, tag=journey.tag, error=None, created_at=now,
                        updated_at=now, payload={
                            "journey": journey.name, "version": journeys.version,
                            "event_id": stored.id, "event_type": stored.type,
                            "event_at": stored.occurred_at.isoformat(),
                            "events": [e.id for e in matching][:20],
                            "fired_at": event_now.isoformat(),
                            "description": journey.description or journey.name,
                            "cancelled_jobs": cancelled,
                        })
                    last_fired[(cid, journey.name)] = now
                    pending[cid].append(PendingJob(id=job_id, tag=journey.tag,
                                                   journey=journey.name, new=True))
                    fired.append(journey.name)
                fired_any = fired_any or bool(fired)
                results[index] = EventResult(index=index, id=event.id, status="accepted",
                                             customer_id=cid, fired=fired,
                                             stage=stage if rule else None)
            w.customers = list(profiles.values())
            w.jobs = list(new_jobs.values()) + sync_rows
            w.stamp_back({cid: timedelta(microseconds=next(c) - 1)
                          for cid, c in ticks.items()})
            b.write(w, now=now)
        if fired_any and self.on_enqueue is not None:
            self.on_enqueue()
        return [results[i] for i in sorted(results)]


def _journey_key(journey: str, customer_id: str, event_id: str) -> str:
    return f"journey:{journey}:{customer_id}:{event_id}"[:240]


def _newest_first(event: Event) -> float:
    return -event.occurred_at.timestamp()

